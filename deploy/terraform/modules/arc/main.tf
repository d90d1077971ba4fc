# Route 53 Application Recovery Controller: the cluster (five regional data-plane endpoints, which
# every Keel process reads its routing controls from), a control panel per application plus the
# generator's, a routing control per application, region and gate plus the generator's, and the
# safety rules of keel-routing's standard_rules. Every name is expanded from keel-names.json's
# patterns over var.regions, as keel_routing::control_name does over the configuration's regions.
#
# This is ARC's control plane (recovery control config), whose API is in us-west-2 only: give this
# module a provider for us-west-2. Nothing at run time needs it: services and keelctl use the
# cluster's data-plane endpoints, which are in five regions. Routing controls are created Off.

locals {
  names   = jsondecode(file(var.keel_names_file))
  routing = local.names.routing
  apps    = { for a in local.names.applications : a.name => a }

  # The gating rule's pattern names its target gate and its gating gate:
  # "{application}-{region}-<target>-needs-<gate>" (target may be On only while gate is On).
  gating_parts = regex("^\\{application\\}-\\{region\\}-([a-z0-9]+)-needs-([a-z0-9]+)$", local.routing.traffic_needs_processing_rule)
  target_gate  = local.gating_parts[0]
  gating_gate  = local.gating_parts[1]

  # The applications that take participants' traffic: those with an api service (ingress). Their
  # target-gate control drives DNS.
  api_apps = distinct([for s in local.names.services : s.application if s.kind == "api"])

  panels = toset(concat(
    [for a in local.names.applications : a.control_panel],
    [local.routing.generator_control_panel],
  ))

  controls = merge(
    {
      for t in setproduct(keys(local.apps), var.regions, local.routing.gates) :
      replace(replace(replace(local.routing.control, "{application}", t[0]), "{region}", t[1]), "{gate}", t[2]) => {
        app    = t[0]
        region = t[1]
        gate   = t[2]
        panel  = local.apps[t[0]].control_panel
      }
    },
    {
      (local.routing.generator_control) = {
        app    = ""
        region = ""
        gate   = ""
        panel  = local.routing.generator_control_panel
      }
    },
  )

  control_name = {
    for name, c in local.controls : "${c.app}/${c.region}/${c.gate}" => name if c.app != ""
  }

  # Per application and gate: at most one region's control On.
  one_region_rules = {
    for t in setproduct(keys(local.apps), local.routing.gates) :
    replace(replace(local.routing.one_region_rule, "{application}", t[0]), "{gate}", t[1]) => {
      app  = t[0]
      gate = t[1]
    }
  }

  # Per application and region: the target gate's control may be On only while the gating gate's is.
  gating_rules = {
    for t in setproduct(keys(local.apps), var.regions) :
    replace(replace(local.routing.traffic_needs_processing_rule, "{application}", t[0]), "{region}", t[1]) => {
      app    = t[0]
      region = t[1]
    }
  }
}

resource "aws_route53recoverycontrolconfig_cluster" "this" {
  name = var.name_prefix
}

resource "aws_route53recoverycontrolconfig_control_panel" "this" {
  for_each    = local.panels
  name        = each.value
  cluster_arn = aws_route53recoverycontrolconfig_cluster.this.arn
}

resource "aws_route53recoverycontrolconfig_routing_control" "this" {
  for_each          = local.controls
  name              = each.key
  cluster_arn       = aws_route53recoverycontrolconfig_cluster.this.arn
  control_panel_arn = aws_route53recoverycontrolconfig_control_panel.this[each.value.panel].arn
}

resource "aws_route53recoverycontrolconfig_safety_rule" "one_region" {
  for_each          = local.one_region_rules
  name              = each.key
  control_panel_arn = aws_route53recoverycontrolconfig_control_panel.this[local.apps[each.value.app].control_panel].arn
  wait_period_ms    = var.wait_period_ms
  asserted_controls = [
    for region in var.regions :
    aws_route53recoverycontrolconfig_routing_control.this[local.control_name["${each.value.app}/${region}/${each.value.gate}"]].arn
  ]

  # ASSERTION "at most one of these controls (one per region) is On". ARC's rule types are ATLEAST,
  # AND and OR only (no ATMOST), so: NOT (ATLEAST 2 On). With every control Off (as created) the
  # rule holds.
  rule_config {
    inverted  = true
    threshold = 2
    type      = "ATLEAST"
  }
}

resource "aws_route53recoverycontrolconfig_safety_rule" "gating" {
  for_each          = local.gating_rules
  name              = each.key
  control_panel_arn = aws_route53recoverycontrolconfig_control_panel.this[local.apps[each.value.app].control_panel].arn
  wait_period_ms    = var.wait_period_ms
  gating_controls = [
    aws_route53recoverycontrolconfig_routing_control.this[local.control_name["${each.value.app}/${each.value.region}/${local.gating_gate}"]].arn
  ]
  target_controls = [
    aws_route53recoverycontrolconfig_routing_control.this[local.control_name["${each.value.app}/${each.value.region}/${local.target_gate}"]].arn
  ]

  # GATING, ATLEAST 1 of the one gating control: the target (traffic) control can be changed only
  # while the gate (processing) is On. ARC evaluates a gating rule on changes to the target: unlike
  # the local endpoint's state rule, turning the gate Off while the target is On is not refused,
  # and while the gate is Off the target cannot be changed either way. keelctl turns traffic Off
  # before processing (rotation steps 3 and 5) and processing On before traffic (steps 8 and 11).
  rule_config {
    inverted  = false
    threshold = 1
    type      = "ATLEAST"
  }

  lifecycle {
    precondition {
      condition     = contains(local.routing.gates, local.gating_gate) && contains(local.routing.gates, local.target_gate)
      error_message = "keel-names.json's traffic_needs_processing_rule no longer names two of routing.gates as <target>-needs-<gate>: update this module."
    }
  }
}

# Route 53 health checks that follow a routing control: healthy while it is On. DNS for the
# participants' hostname answers with the regions whose check is healthy (dns module).
resource "aws_route53_health_check" "target_gate" {
  for_each            = { for t in setproduct(local.api_apps, var.regions) : "${t[0]}/${t[1]}" => { app = t[0], region = t[1] } }
  type                = "RECOVERY_CONTROL"
  routing_control_arn = aws_route53recoverycontrolconfig_routing_control.this[local.control_name["${each.value.app}/${each.value.region}/${local.target_gate}"]].arn
  tags                = { Name = "${var.name_prefix}-${each.value.app}-${each.value.region}-${local.target_gate}" }
}
