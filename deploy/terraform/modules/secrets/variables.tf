variable "name_prefix" {
  description = "Prefix of every resource name of this deployment."
  type        = string
}

variable "secret_names" {
  description = "The environment variables a Keel process reads a secret from (one entry each)."
  type        = list(string)
}

variable "applications" {
  description = "The applications (one Aurora master secret each)."
  type        = list(string)
}

variable "kms_key_arns" {
  description = "Per region (this provider's and every replica's): its KMS key."
  type        = map(string)
}

variable "aurora_master_username" {
  description = "The Aurora clusters' master user."
  type        = string
}

variable "aurora_master_passwords" {
  description = "Per application: its Aurora master password. Ephemeral: written write-only, never stored in the state."
  type        = map(string)
  ephemeral   = true
  sensitive   = true
}

variable "aurora_master_password_version" {
  description = "Bump with the aurora modules' master_password_version to write new master passwords."
  type        = number
  default     = 1
}
