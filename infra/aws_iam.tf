# One task role per service, allowed exactly the queues, topics and sends it needs (see
# local.services), on ARNs formatted from the names so that the plan shows every policy.
# tests/infra reads these policies from a plan and fails on any access a service does not need.
locals {
  queue_arn = { for name in keys(local.physical) : name => "${local.sqs_arn_prefix}:${local.physical[name]}" }
  topic_arn = { for name in keys(local.topics) : name => "${local.sns_arn_prefix}:${local.physical[name]}" }

  consume_actions = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]

  # The orchestrator's operator endpoints list, retry and redrive dead letters.
  redrive_sources = [for name in keys(local.redriven_queues) : "${name}-dlq"]

  sender_identity_arn = "arn:${local.partition}:ses:${var.aws_region}:${local.account_id}:identity/${var.sender_email}"

  task_policies = {
    for svc, s in local.services : svc => {
      Version = "2012-10-17"
      Statement = concat(
        [
          {
            Sid      = "ConsumeOwnQueues"
            Effect   = "Allow"
            Action   = local.consume_actions
            Resource = [for q in s.consumes : local.queue_arn[q]]
          },
          {
            Sid      = "SendToQueues"
            Effect   = "Allow"
            Action   = ["sqs:SendMessage", "sqs:GetQueueUrl"]
            Resource = [for q in s.sends_to : local.queue_arn[q]]
          },
          {
            Sid      = "DeadLetterOwnFailures"
            Effect   = "Allow"
            Action   = ["sqs:SendMessage", "sqs:GetQueueUrl"]
            Resource = [for q in s.consumes : local.queue_arn["${q}-dlq"] if contains(keys(local.redriven_queues), q)]
          },
          {
            Sid       = "PutOwnMetrics"
            Effect    = "Allow"
            Action    = "cloudwatch:PutMetricData"
            Resource  = "*" # PutMetricData has no resource; the namespace condition limits it
            Condition = { StringEquals = { "cloudwatch:namespace" = local.metric_namespace } }
          },
        ],
        length(s.publishes) == 0 ? [] : [{
          Sid      = "PublishToTopics"
          Effect   = "Allow"
          Action   = "sns:Publish"
          Resource = [for t in s.publishes : local.topic_arn[t]]
        }],
        [for statement in [
          {
            Sid      = "HandleDeadLetters"
            Effect   = "Allow"
            Action   = local.consume_actions
            Resource = [for q in local.dead_letter_queue_names : local.queue_arn[q]]
          },
          {
            Sid      = "RedriveDeadLetters"
            Effect   = "Allow"
            Action   = ["sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks"]
            Resource = [for q in local.redrive_sources : local.queue_arn[q]]
          },
        ] : statement if svc == "orchestrator"],
        svc != "notification_svc" ? [] : [{
          Sid      = "SendEmailAsSender"
          Effect   = "Allow"
          Action   = ["ses:SendEmail", "ses:SendRawEmail"]
          Resource = local.sender_identity_arn
        }],
        # The tracing sidecar runs under the task role: it sends the spans to X-Ray.
        var.tracing ? [{
          Sid      = "SendTraces"
          Effect   = "Allow"
          Action   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
          Resource = "*" # X-Ray's write actions take no resource
        }] : [],
        # Its own login on its own database, and no other (aws_database.tf, aws_bootstrap.tf).
        !var.deploy_services ? [] : [{
          Sid      = "ConnectAsOwnLogin"
          Effect   = "Allow"
          Action   = "rds-db:connect"
          Resource = "arn:${local.partition}:rds-db:${var.aws_region}:${local.account_id}:dbuser:${aws_db_instance.main[local.instance_of[svc]].resource_id}/${svc}"
        }],
        local.queue_kms_key == null ? [] : [{
          Sid      = "UseQueueKey"
          Effect   = "Allow"
          Action   = ["kms:GenerateDataKey", "kms:Decrypt"]
          Resource = var.queue_kms_key_arn
        }],
        local.topic_kms_key == null || length(s.publishes) == 0 ? [] : [{
          Sid      = "UseTopicKey"
          Effect   = "Allow"
          Action   = ["kms:GenerateDataKey", "kms:Decrypt"]
          Resource = var.topic_kms_key_arn
        }],
      )
    }
  }

  # The image's registry, when it is ECR: the execution role may pull from that repository only.
  ecr_image = regex("^(?:(?P<account>[0-9]{12})\\.dkr\\.ecr\\.(?P<region>[a-z0-9-]+)\\.amazonaws\\.com/(?P<repository>[^:@]+))?", var.image)
  ecr_repository_arn = local.ecr_image.account == null ? null : (
    "arn:${local.partition}:ecr:${local.ecr_image.region}:${local.ecr_image.account}:repository/${local.ecr_image.repository}"
  )

  # The execution role (used by ECS, not the code) pulls the image, writes the logs and
  # reads the service's own secrets to hand them to the container.
  execution_policies = {
    for svc in keys(local.services) : svc => {
      Version = "2012-10-17"
      Statement = concat(
        [
          {
            Sid      = "ReadOwnSecrets"
            Effect   = "Allow"
            Action   = "secretsmanager:GetSecretValue"
            Resource = [local.secret_arns.operator_token]
          },
          {
            Sid      = "WriteOwnLogs"
            Effect   = "Allow"
            Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
            Resource = "${local.log_group_arns[svc]}:*"
          },
        ],
        [for statement in [
          {
            Sid      = "RegistryLogin"
            Effect   = "Allow"
            Action   = "ecr:GetAuthorizationToken"
            Resource = "*" # GetAuthorizationToken has no resource
          },
          {
            Sid      = "PullImage"
            Effect   = "Allow"
            Action   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
            Resource = local.ecr_repository_arn
          },
        ] : statement if local.ecr_repository_arn != null],
        var.logs_kms_key_arn == "" ? [] : [{
          Sid      = "DecryptOwnSecrets"
          Effect   = "Allow"
          Action   = "kms:Decrypt"
          Resource = var.logs_kms_key_arn
        }],
      )
    }
  }

  deployed_services = var.deploy_services ? local.services : {}
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "task" {
  for_each = local.deployed_services

  name               = local.task_role_names[each.key]
  description        = "What ${each.key}'s code may do: its own queues, its sends, its metrics."
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "task" {
  for_each = local.deployed_services

  name   = "messaging"
  role   = aws_iam_role.task[each.key].id
  policy = jsonencode(local.task_policies[each.key])
}

resource "aws_iam_role" "execution" {
  for_each = local.deployed_services

  name               = join("-", compact([var.name_prefix, replace(each.key, "_", "-"), "exec"]))
  description        = "What ECS may do to start ${each.key}: pull the image, write its logs, read its secrets."
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "execution" {
  for_each = local.deployed_services

  name   = "start-task"
  role   = aws_iam_role.execution[each.key].id
  policy = jsonencode(local.execution_policies[each.key])
}
