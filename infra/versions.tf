terraform {
  # 1.11: write-only arguments keep the generated database password out of the state.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
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
      kms        = endpoints.value
      ses        = endpoints.value
      sns        = endpoints.value
      sqs        = endpoints.value
      sts        = endpoints.value
    }
  }

  default_tags {
    tags = merge(var.tags, {
      Project = "order-saga"
      Stack   = var.name_prefix
    })
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # ARNs are formatted from the names rather than read from the resources, so that the
  # policies built from them are known at plan time (and visible to `terraform test`).
  sqs_arn_prefix = "arn:${local.partition}:sqs:${var.aws_region}:${local.account_id}"
  sns_arn_prefix = "arn:${local.partition}:sns:${var.aws_region}:${local.account_id}"
}
