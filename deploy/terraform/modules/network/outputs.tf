output "region" {
  description = "The region of this network."
  value       = local.region
}

output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.this.id
}

output "cidr" {
  description = "The VPC's CIDR block."
  value       = aws_vpc.this.cidr_block
}

output "private_subnet_ids" {
  description = "Private subnets, one per zone: every Keel task, broker and database."
  value       = aws_subnet.private[*].id
}

output "private_subnet_arns" {
  description = "Private subnets' ARNs (FIS targets)."
  value       = aws_subnet.private[*].arn
}

output "private_cidrs" {
  description = "Private subnets' CIDR blocks: what a peered region's tasks come from."
  value       = aws_subnet.private[*].cidr_block
}

output "public_subnet_ids" {
  description = "Public subnets, one per zone: the ALB and the NAT gateways."
  value       = aws_subnet.public[*].id
}

output "private_route_table_ids" {
  description = "Private route tables (peering routes go here)."
  value       = aws_route_table.private[*].id
}

output "vpc_arn" {
  description = "The VPC's ARN."
  value       = aws_vpc.this.arn
}
