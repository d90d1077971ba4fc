variable "keel_names_file" {
  description = "Path of keel-names.json (generated from the code): the table's name and keys."
  type        = string
}

variable "kms_key_arns" {
  description = "Per region (the provider's region and every replica's): its KMS key."
  type        = map(string)
}
