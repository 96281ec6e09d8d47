terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

locals {
  # A non-empty endpoint_url means an emulator (LocalStack, moto): dummy credentials,
  # no account/metadata lookups, every service we use pointed at that one URL.
  emulated = var.endpoint_url != ""
}

provider "aws" {
  region = var.aws_region

  access_key = local.emulated ? "test" : null
  secret_key = local.emulated ? "test" : null

  skip_credentials_validation = local.emulated
  skip_metadata_api_check     = local.emulated
  skip_requesting_account_id  = local.emulated

  dynamic "endpoints" {
    for_each = local.emulated ? [var.endpoint_url] : []
    content {
      cloudwatch = endpoints.value
      iam        = endpoints.value
      ses        = endpoints.value
      sns        = endpoints.value
      sqs        = endpoints.value
      sts        = endpoints.value
    }
  }

  default_tags {
    tags = {
      Project = "order-saga"
      Stack   = var.name_prefix
    }
  }
}
