# Variables of the services' compute, database and network on AWS. Nothing here is
# created unless deploy_services is true; the default configuration (queues, topics,
# alarms, dashboard) applies to LocalStack and moto.

variable "deploy_services" {
  description = "Run the six services on ECS Fargate with RDS PostgreSQL, a load balancer and a VPC. Needs real AWS (not an emulator)."
  type        = bool
  default     = false
}

variable "image" {
  description = "Container image of the services (one image; the command picks the service), e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/order-saga:1.4.0. Changing it rolls every service out."
  type        = string
  default     = ""

  validation {
    condition     = !var.deploy_services || var.image != ""
    error_message = "deploy_services needs image."
  }
}

variable "certificate_arn" {
  description = "ACM certificate of the public order API's HTTPS listener."
  type        = string
  default     = ""

  validation {
    condition     = !var.deploy_services || startswith(var.certificate_arn, "arn:")
    error_message = "deploy_services needs certificate_arn (an ACM certificate ARN)."
  }
}

variable "public_ingress_cidr_blocks" {
  description = "Who may reach the public order API."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "operator_cidr_blocks" {
  description = "Networks (VPN, bastion) that may reach the internal endpoints (the saga API with its operator endpoints, and every service's own API) through service discovery. The VPC itself always may."
  type        = list(string)
  default     = []
}

# --- network -------------------------------------------------------------------------------

variable "vpc_id" {
  description = "Existing VPC to deploy into. Empty: create a VPC with public and private subnets in two availability zones and one NAT gateway."
  type        = string
  default     = ""
}

variable "public_subnet_ids" {
  description = "With vpc_id: subnets of the internet-facing load balancer (two availability zones at least)."
  type        = list(string)
  default     = []
}

variable "private_subnet_ids" {
  description = "With vpc_id: subnets of the tasks and the database, with a route out (NAT or VPC endpoints) to the AWS APIs and the image registry."
  type        = list(string)
  default     = []
}

variable "vpc_cidr" {
  description = "CIDR of the VPC created when vpc_id is empty."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Two (or more) availability zones for the created VPC. Empty: the region's first two."
  type        = list(string)
  default     = []
}

# --- services ------------------------------------------------------------------------------

variable "service_settings" {
  description = "Per-service sizes, e.g. { payment_svc = { cpu = 512, memory = 1024, min_tasks = 2, max_tasks = 8 } }. Services not listed use the defaults. db_pool_size, db_max_overflow and relay_pool_size (DB_POOL_SIZE, DB_MAX_OVERFLOW, RELAY_POOL_SIZE) replace the sizes the connection budget derives; the plan fails if the tasks could then open more connections than the database allows."
  type = map(object({
    cpu             = optional(number, 256)
    memory          = optional(number, 512)
    min_tasks       = optional(number, 1)
    max_tasks       = optional(number, 4)
    db_pool_size    = optional(number)
    db_max_overflow = optional(number)
    relay_pool_size = optional(number)
  }))
  default = {}

  validation {
    # The bounds ServiceSettings checks at start (libs/messaging/settings.py).
    condition = alltrue([
      for s in values(var.service_settings) :
      (s.db_pool_size == null || try(s.db_pool_size >= 1 && s.db_pool_size <= 100, false))
      && (s.db_max_overflow == null || try(s.db_max_overflow >= 0 && s.db_max_overflow <= 100, false))
      && (s.relay_pool_size == null || try(s.relay_pool_size >= 1 && s.relay_pool_size <= 20, false))
    ])
    error_message = "service_settings: db_pool_size must be 1-100, db_max_overflow 0-100, relay_pool_size 1-20."
  }
}

variable "backlog_per_task" {
  description = "Target of the auto scaling of each worker: messages waiting in its queues per running task."
  type        = number
  default     = 50
}

variable "service_environment" {
  description = "Further plain environment of every service (e.g. LOG_LEVEL, ORCHESTRATOR_TIMEOUTS__FULFILL_ORDER). Never secrets: those go through Secrets Manager. Not the pool sizes: those come from the connection budget (or service_settings)."
  type        = map(string)
  default     = {}

  validation {
    condition     = length(setintersection(keys(var.service_environment), ["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"])) == 0
    error_message = "DB_POOL_SIZE, DB_MAX_OVERFLOW and RELAY_POOL_SIZE come from the connection budget; set them per service in service_settings (db_pool_size, db_max_overflow, relay_pool_size)."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch Logs keeps the services' logs."
  type        = number
  default     = 30
}

variable "logs_kms_key_arn" {
  description = "KMS key ARN for the log groups and the secrets. Empty: AWS-owned keys. The key policy must let CloudWatch Logs and Secrets Manager use it."
  type        = string
  default     = ""
}

variable "waf_enabled" {
  description = "A WAF with a rate-based rule per client address in front of the order API."
  type        = bool
  default     = true
}

variable "waf_requests_per_5_minutes" {
  description = "Requests one client address may make in five minutes before the WAF blocks it."
  type        = number
  default     = 1000
  validation {
    condition     = var.waf_requests_per_5_minutes >= 10 && var.waf_requests_per_5_minutes <= 2000000000
    error_message = "waf_requests_per_5_minutes must be between 10 and 2,000,000,000 (AWS's bounds)."
  }
}

variable "alb_deletion_protection" {
  description = "Protect the load balancer from deletion."
  type        = bool
  default     = false
}

# --- database ------------------------------------------------------------------------------

variable "database_instance_per_service" {
  description = "One RDS instance per service instead of one instance holding one database per service."
  type        = bool
  default     = false
}

variable "database_instance_class" {
  description = "RDS instance class: one of the classes the connection budget knows (aws_connection_budget.tf), whose memory sets max_connections. The default is the smallest whose budget gives every task of the default deployment a working pool (infra/README.md, Connection budget)."
  type        = string
  default     = "db.t4g.medium"

  validation {
    condition     = contains(keys(local.database_class_memory_gib), var.database_instance_class)
    error_message = "database_instance_class must be one of the classes in local.database_class_memory_gib (db.t4g.micro to 2xlarge, db.m7g.large to 2xlarge, db.r7g.large to 2xlarge); add a class there with its memory."
  }
}

variable "database_operator_connections" {
  description = "Connections of each RDS instance kept free of the services' pools for operators: psql, a migration or a dump by hand (RDS's own 3 come on top)."
  type        = number
  default     = 5

  validation {
    condition     = var.database_operator_connections >= 0
    error_message = "database_operator_connections cannot be negative."
  }
}

variable "database_allocated_storage" {
  description = "GiB of storage of each RDS instance (gp3; grows automatically up to ten times this)."
  type        = number
  default     = 20
}

variable "database_engine_version" {
  description = "PostgreSQL major version on RDS."
  type        = string
  default     = "16"
}

variable "database_multi_az" {
  description = "Run each RDS instance with a standby in a second availability zone."
  type        = bool
  default     = false
}

variable "database_backup_retention_days" {
  description = "Days of automated RDS backups (point-in-time recovery); at least 1."
  type        = number
  default     = 7

  validation {
    condition     = var.database_backup_retention_days >= 1 && var.database_backup_retention_days <= 35
    error_message = "database_backup_retention_days must be between 1 and 35 (backups stay on)."
  }
}

variable "database_deletion_protection" {
  description = "Protect the RDS instances from deletion (set false before destroying the stack)."
  type        = bool
  default     = true
}

variable "tracing" {
  description = "OpenTelemetry traces to CloudWatch/X-Ray: an ADOT collector beside every service (OTLP on localhost:4318), the services exporting to it, and the X-Ray permissions it needs."
  type        = bool
  default     = false
}

variable "tracing_collector_image" {
  description = "The AWS Distro for OpenTelemetry collector image the tracing sidecar runs."
  type        = string
  default     = "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3"
}

variable "tracing_sampler_ratio" {
  description = "Share of sagas traced (OTEL_TRACES_SAMPLER=parentbased_traceidratio): every span of a saga follows its first."
  type        = number
  default     = 1.0
  validation {
    condition     = var.tracing_sampler_ratio > 0 && var.tracing_sampler_ratio <= 1
    error_message = "tracing_sampler_ratio must be in (0, 1]."
  }
}
