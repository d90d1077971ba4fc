output "cluster_arn" {
  description = "The ARC cluster."
  value       = aws_route53recoverycontrolconfig_cluster.this.arn
}

output "cluster_endpoints" {
  description = "The cluster's data-plane endpoints with their regions ([control] endpoints)."
  value = [
    for e in aws_route53recoverycontrolconfig_cluster.this.cluster_endpoints :
    { url = e.endpoint, region = e.region }
  ]
}

output "control_panel_arns" {
  description = "Per control panel name: its ARN."
  value       = { for name, p in aws_route53recoverycontrolconfig_control_panel.this : name => p.arn }
}

output "routing_control_arns" {
  description = "Per routing control name: its ARN."
  value       = { for name, c in aws_route53recoverycontrolconfig_routing_control.this : name => c.arn }
}

output "routing_control_arns_by_application" {
  description = "Per application: the ARNs of its routing controls (every region and gate)."
  value = {
    for app in keys(local.apps) : app => [
      for name, c in local.controls : aws_route53recoverycontrolconfig_routing_control.this[name].arn if c.app == app
    ]
  }
}

output "safety_rule_arns" {
  description = "Per safety rule name: its ARN."
  value = merge(
    { for name, r in aws_route53recoverycontrolconfig_safety_rule.one_region : name => r.arn },
    { for name, r in aws_route53recoverycontrolconfig_safety_rule.gating : name => r.arn },
  )
}

output "traffic_health_check_ids" {
  description = "Per region: the health check following the participants' application's traffic control there."
  value       = { for k, h in aws_route53_health_check.target_gate : split("/", k)[1] => h.id }
}
