# The participants' hostname. Each region's ALB has a name of its own (<region>.<api hostname>,
# handed to clients by a region that does not take traffic: [regions.<region>] ingress_url), and
# the shared name answers with the region whose traffic routing control is On: each record carries
# the Route 53 health check that follows that control (arc module). With two regions the records
# are PRIMARY/SECONDARY failover records; with more, equal-weight records (failover routing has only
# two roles), which answer the same way because at most one region's control is On.

locals {
  failover = length(var.regions) == 2
}

resource "aws_route53_record" "regional" {
  for_each = toset(var.regions)
  zone_id  = var.zone_id
  name     = "${each.value}.${var.api_hostname}"
  type     = "A"

  alias {
    name                   = var.albs[each.value].dns_name
    zone_id                = var.albs[each.value].zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "api" {
  for_each        = toset(var.regions)
  zone_id         = var.zone_id
  name            = var.api_hostname
  type            = "A"
  set_identifier  = each.value
  health_check_id = var.health_check_ids[each.value]

  alias {
    name                   = var.albs[each.value].dns_name
    zone_id                = var.albs[each.value].zone_id
    evaluate_target_health = false
  }

  dynamic "failover_routing_policy" {
    for_each = local.failover ? [each.value] : []
    content {
      type = index(var.regions, each.value) == 0 ? "PRIMARY" : "SECONDARY"
    }
  }

  dynamic "weighted_routing_policy" {
    for_each = local.failover ? [] : [each.value]
    content {
      weight = 1
    }
  }
}
