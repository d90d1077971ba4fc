output "key_arn" {
  description = "The region's key."
  value       = aws_kms_key.this.arn
}

output "region" {
  description = "The region the key is in."
  value       = local.region
}
