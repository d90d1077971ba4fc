variable "keel_names_file" {
  description = "Path of keel-names.json (generated from the code): control panels, routing controls, safety rules."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of every resource name of this deployment (the ARC cluster's name)."
  type        = string
}

variable "regions" {
  description = "The regions Keel runs in; the routing controls and rules are expanded over them."
  type        = list(string)
}

variable "wait_period_ms" {
  description = "How long ARC waits after a change before evaluating a rule again."
  type        = number
  default     = 5000
}
