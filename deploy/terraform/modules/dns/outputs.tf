output "api_url" {
  description = "The participants' base URL."
  value       = "https://${var.api_hostname}"
}

output "regional_urls" {
  description = "Per region: its ingress base URL ([regions.<region>] ingress_url)."
  value       = { for r in var.regions : r => "https://${aws_route53_record.regional[r].fqdn}" }
}
