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
  description = "Receives before SQS moves a message to the dead-letter queue; must equal contracts.topology.MAX_RECEIVE_COUNT."
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
  description = "Further ARNs (e.g. an existing on-call SNS topic) notified by every alarm, besides the alerts topic this configuration creates."
  type        = list(string)
  default     = []
}

variable "restrict_dead_letter_sources" {
  description = "Give each dead-letter queue a RedriveAllowPolicy that admits only its own source queue. Set false on emulators without RedriveAllowPolicy support (moto ignores the attribute, so Terraform would wait for it forever)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource, merged into the default tags (Project, Stack)."
  type        = map(string)
  default     = {}
}

# --- encryption ----------------------------------------------------------------------------

variable "queue_kms_key_arn" {
  description = "KMS key ARN for server-side encryption of every queue. Empty: SQS-managed keys (SSE-SQS). The key policy must let the services' task roles (and sns.amazonaws.com, for a queue a topic delivers to) use it."
  type        = string
  default     = ""
}

variable "topic_kms_key_arn" {
  description = "KMS key ARN for server-side encryption of the topics, the alerts topic included. Empty: unencrypted. The key policy must let the publishing task roles and CloudWatch (cloudwatch.amazonaws.com) use it, or alarms cannot notify."
  type        = string
  default     = ""
}

# --- alerting ------------------------------------------------------------------------------

variable "alert_email" {
  description = "If non-empty, this address is subscribed to the alerts topic (it must confirm the subscription)."
  type        = string
  default     = ""
}

variable "outbox_age_alarm_seconds" {
  description = "Alarm when a service's oldest unpublished outbox row is older than this."
  type        = number
  default     = 60
}

variable "create_dashboard" {
  description = "Create the CloudWatch dashboard. An emulator without CloudWatch dashboards can set it to false."
  type        = bool
  default     = true
}
