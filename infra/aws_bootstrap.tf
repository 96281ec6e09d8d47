# The one-off task that alone uses the master credentials, run once per deploy before the
# services start (its command is the output bootstrap_run_task): for each service a login of
# its own, owning its database and allowed into no other, signed in with IAM (rds_iam); and
# the bootstrap operator token, drawn and written to its secret when that is still empty.
# No task definition of a service names the master secret (infra/tests/aws.tftest.hcl).
locals {
  bootstrap_name = "${local.cluster_name}-bootstrap"
}

resource "aws_cloudwatch_log_group" "bootstrap" {
  #checkov:skip=CKV_AWS_338:Retention is the variable log_retention_days, as for the services.
  count = var.deploy_services ? 1 : 0

  name              = "/ecs/${local.cluster_name}/bootstrap"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn == "" ? null : var.logs_kms_key_arn
}

resource "aws_iam_role" "bootstrap_task" {
  count = var.deploy_services ? 1 : 0

  name               = join("-", compact([var.name_prefix, "bootstrap"]))
  description        = "What the bootstrap task's code may do: write the bootstrap operator token once."
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "bootstrap_task" {
  count = var.deploy_services ? 1 : 0

  name = "operator-token"
  role = aws_iam_role.bootstrap_task[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat([{
      Sid      = "WriteBootstrapTokenOnce"
      Effect   = "Allow"
      Action   = ["secretsmanager:DescribeSecret", "secretsmanager:PutSecretValue"]
      Resource = local.secret_arns.operator_token
      }], var.logs_kms_key_arn == "" ? [] : [{
      Sid      = "EncryptTheToken"
      Effect   = "Allow"
      Action   = ["kms:GenerateDataKey", "kms:Decrypt"]
      Resource = var.logs_kms_key_arn
    }])
  })
}

resource "aws_iam_role" "bootstrap_execution" {
  count = var.deploy_services ? 1 : 0

  name               = join("-", compact([var.name_prefix, "bootstrap", "exec"]))
  description        = "What ECS may do to start the bootstrap task: pull the image, write its logs, read the master secrets."
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "bootstrap_execution" {
  count = var.deploy_services ? 1 : 0

  name = "start-task"
  role = aws_iam_role.bootstrap_execution[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid      = "ReadMasterSecrets"
          Effect   = "Allow"
          Action   = "secretsmanager:GetSecretValue"
          Resource = [for instance in aws_db_instance.main : instance.master_user_secret[0].secret_arn]
        },
        {
          Sid      = "WriteOwnLogs"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = "${aws_cloudwatch_log_group.bootstrap[0].arn}:*"
        },
      ],
      [for statement in [
        { Sid = "RegistryLogin", Effect = "Allow", Action = ["ecr:GetAuthorizationToken"], Resource = ["*"] },
        {
          Sid      = "PullImage"
          Effect   = "Allow"
          Action   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
          Resource = [local.ecr_repository_arn]
        },
      ] : statement if local.ecr_repository_arn != null],
      local.secrets_kms_key == null ? [] : [{
        Sid      = "DecryptMasterSecrets"
        Effect   = "Allow"
        Action   = "kms:Decrypt"
        Resource = local.secrets_kms_key
      }],
    )
  })
}

resource "aws_ecs_task_definition" "bootstrap" {
  for_each = local.database_instances

  family                   = "${local.bootstrap_name}-${replace(each.key, "_", "-")}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  task_role_arn            = aws_iam_role.bootstrap_task[0].arn
  execution_role_arn       = aws_iam_role.bootstrap_execution[0].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name                   = "bootstrap"
    image                  = var.image
    command                = ["python", "-m", "messaging.bootstrap"]
    essential              = true
    readonlyRootFilesystem = true
    environment = [for name, value in {
      BOOTSTRAP_MASTER_URL = format(
        "postgresql://%s@%s:%d/postgres?ssl=verify-full",
        local.database_user, aws_db_instance.main[each.key].address, aws_db_instance.main[each.key].port,
      )
      BOOTSTRAP_LOGINS                = jsonencode({ for svc in each.value : svc => svc })
      BOOTSTRAP_IAM                   = "true"
      BOOTSTRAP_OPERATOR_TOKEN_SECRET = aws_secretsmanager_secret.operator_token[0].arn
      PGSSLROOTCERT                   = local.rds_ca_bundle
      AWS_REGION                      = var.aws_region
    } : { name = name, value = value }]
    # The RDS-managed master secret ({"username", "password"}): this task's alone.
    secrets = [{ name = "BOOTSTRAP_MASTER_PASSWORD", valueFrom = aws_db_instance.main[each.key].master_user_secret[0].secret_arn }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.bootstrap[0].name
        awslogs-region        = var.aws_region
        awslogs-stream-prefix = "bootstrap"
      }
    }
  }])
}

output "bootstrap_run_task" {
  description = "Run once per deploy, before the services start (each instance's, with database_instance_per_service)."
  value = [for key, task in aws_ecs_task_definition.bootstrap : join(" ", [
    "aws ecs run-task --cluster ${aws_ecs_cluster.main[0].name} --launch-type FARGATE",
    "--task-definition ${task.family}",
    "--network-configuration 'awsvpcConfiguration={subnets=[${join(",", local.private_subnet_ids)}],securityGroups=[${aws_security_group.services[0].id}],assignPublicIp=DISABLED}'",
  ])]
}
