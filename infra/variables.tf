variable "name_prefix" {
  description = "Prefix of every physical name (\"<prefix>-<logical>\"); must match SAGA_RESOURCE_PREFIX of the services. Empty means no prefix."
  type        = string
  default     = "saga"

  validation {
    condition     = can(regex("^[a-z0-9-]{0,40}$", var.name_prefix))
    error_message = "name_prefix may contain only lowercase letters, digits and '-' (at most 40 characters), like SAGA_RESOURCE_PREFIX."
  }
}

variable "aws_region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"
}

variable "endpoint_url" {
  description = "If non-empty, deploy to an AWS emulator at this URL (e.g. http://localhost:4566 for LocalStack) with dummy credentials."
  type        = string
  default     = ""
}

variable "max_receive_count" {
  description = "Receives before SQS moves a message to the dead-letter queue; must equal messaging.topology.MAX_RECEIVE_COUNT."
  type        = number
  default     = 10

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "sender_email" {
  description = "From address of customer notifications; verified as an SES email identity."
  type        = string
  default     = "orders@shop.example"
}

variable "alarm_actions" {
  description = "ARNs (e.g. SNS topics) notified when a dead-letter queue fills or a queue backs up."
  type        = list(string)
  default     = []
}

variable "restrict_dead_letter_sources" {
  description = "Give each dead-letter queue a RedriveAllowPolicy that admits only its own source queue. Set false on emulators without RedriveAllowPolicy support (moto ignores the attribute, so Terraform would wait for it forever)."
  type        = bool
  default     = true
}
