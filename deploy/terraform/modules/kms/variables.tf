variable "name_prefix" {
  description = "Prefix of every resource name of this deployment."
  type        = string
}
