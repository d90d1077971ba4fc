# Peers two regions' VPCs. Keel needs it: a stage produces the two inter-application topics to the
# Kafka cluster of the region where the receiving application is active (DESIGN section 3), and
# keelctl, the console and the reconciler read every region's databases and ops endpoints. Each
# region's Cloud Map zone (the ops endpoints' names) is associated with the other VPC so the names
# resolve there too. One instance per pair of regions: a third region adds two pairs.

data "aws_region" "accepter" {
  provider = aws.accepter
}

resource "aws_vpc_peering_connection" "this" {
  provider    = aws.requester
  vpc_id      = var.requester.vpc_id
  peer_vpc_id = var.accepter.vpc_id
  peer_region = data.aws_region.accepter.name
  auto_accept = false
  tags        = { Name = "${var.name_prefix}-${var.requester.region}-${var.accepter.region}" }
}

resource "aws_vpc_peering_connection_accepter" "this" {
  provider                  = aws.accepter
  vpc_peering_connection_id = aws_vpc_peering_connection.this.id
  auto_accept               = true
  tags                      = { Name = "${var.name_prefix}-${var.requester.region}-${var.accepter.region}" }
}

resource "aws_route" "requester_to_accepter" {
  provider                  = aws.requester
  count                     = length(var.requester.private_route_table_ids)
  route_table_id            = var.requester.private_route_table_ids[count.index]
  destination_cidr_block    = var.accepter.cidr
  vpc_peering_connection_id = aws_vpc_peering_connection.this.id
  depends_on                = [aws_vpc_peering_connection_accepter.this]
}

resource "aws_route" "accepter_to_requester" {
  provider                  = aws.accepter
  count                     = length(var.accepter.private_route_table_ids)
  route_table_id            = var.accepter.private_route_table_ids[count.index]
  destination_cidr_block    = var.requester.cidr
  vpc_peering_connection_id = aws_vpc_peering_connection.this.id
  depends_on                = [aws_vpc_peering_connection_accepter.this]
}

# The ops endpoints' private names (Cloud Map) resolve from the peer VPC too.
resource "aws_route53_zone_association" "requester_zone_in_accepter_vpc" {
  provider   = aws.requester
  zone_id    = var.requester.service_discovery_zone_id
  vpc_id     = var.accepter.vpc_id
  vpc_region = var.accepter.region
}

resource "aws_route53_zone_association" "accepter_zone_in_requester_vpc" {
  provider   = aws.accepter
  zone_id    = var.accepter.service_discovery_zone_id
  vpc_id     = var.requester.vpc_id
  vpc_region = var.requester.region
}
