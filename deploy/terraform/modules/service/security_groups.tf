# Least privilege between the parts: the public ALB reaches only the api service (its port, and its
# ops port for health checks); the operations processes (console, keelctl, reconciler) reach every
# service's ops port, here and from the peered regions; every task reaches MSK over TLS (9094) and
# Aurora (5432) here and in the peered regions, and HTTPS (443) out: the AWS APIs (VPC endpoints),
# the ARC cluster's data plane (public endpoints, no PrivateLink) and participants' webhooks
# (notification). Nothing else in either direction.

locals {
  task_sgs = {
    api        = aws_security_group.api.id
    stage      = aws_security_group.stage.id
    operations = aws_security_group.operations.id
  }
  reachable_cidrs = concat([var.vpc_cidr], var.peer_cidrs)
  egress = merge(
    { for pair in setproduct(keys(local.task_sgs), local.reachable_cidrs, [9094, 5432]) : "${pair[0]}/${pair[1]}/${pair[2]}" => { sg = pair[0], cidr = pair[1], port = pair[2] } },
    { for cidr in local.reachable_cidrs : "operations/${cidr}/${local.ops_port}" => { sg = "operations", cidr = cidr, port = local.ops_port } },
  )
}

resource "aws_security_group" "alb" {
  name        = "${var.name_prefix}-alb"
  description = "Public ALB: HTTPS in from participants, out to the api service only"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "api" {
  name        = "${var.name_prefix}-api"
  description = "Keel api service tasks"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "stage" {
  name        = "${var.name_prefix}-stages"
  description = "Keel stage service tasks"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "operations" {
  name        = "${var.name_prefix}-operations"
  description = "Keel console, reconciler and keelctl tasks"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from participants"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "alb_to_api" {
  for_each                     = toset([tostring(local.api_port), tostring(local.ops_port)])
  security_group_id            = aws_security_group.alb.id
  description                  = "To the api service (traffic and health checks)"
  referenced_security_group_id = aws_security_group.api.id
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.value)
  to_port                      = tonumber(each.value)
}

resource "aws_vpc_security_group_ingress_rule" "api_from_alb" {
  for_each                     = toset([tostring(local.api_port), tostring(local.ops_port)])
  security_group_id            = aws_security_group.api.id
  description                  = "From the ALB (traffic and health checks)"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.value)
  to_port                      = tonumber(each.value)
}

resource "aws_vpc_security_group_ingress_rule" "ops_from_operations" {
  for_each                     = { api = aws_security_group.api.id, stage = aws_security_group.stage.id }
  security_group_id            = each.value
  description                  = "Ops endpoint from the console, reconciler and keelctl"
  referenced_security_group_id = aws_security_group.operations.id
  ip_protocol                  = "tcp"
  from_port                    = local.ops_port
  to_port                      = local.ops_port
}

resource "aws_vpc_security_group_ingress_rule" "ops_from_peer_regions" {
  for_each          = { for pair in setproduct(["api", "stage"], var.peer_cidrs) : "${pair[0]}/${pair[1]}" => { sg = pair[0], cidr = pair[1] } }
  security_group_id = local.task_sgs[each.value.sg]
  description       = "Ops endpoint from a peered region's operations processes"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = local.ops_port
  to_port           = local.ops_port
}

resource "aws_vpc_security_group_ingress_rule" "console_from_operators" {
  for_each          = toset(var.operator_cidrs)
  security_group_id = aws_security_group.operations.id
  description       = "The console from the operators' network"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = local.console_port
  to_port           = local.console_port
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each          = local.task_sgs
  security_group_id = each.value
  description       = "HTTPS: AWS APIs, the ARC data plane, participants' webhooks"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "within" {
  for_each          = local.egress
  security_group_id = local.task_sgs[each.value.sg]
  description       = "MSK TLS, Aurora, or ops endpoints, in this VPC or a peered one"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
}
