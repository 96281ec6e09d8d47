# PostgreSQL on RDS: by default one instance holding one database per service (each
# service creates its own database at start when it is missing, then migrates it); with
# database_instance_per_service, one instance each. The services get their database URL
# and the operator token from Secrets Manager, handed to the container as `secrets`.
locals {
  database_instances = !var.deploy_services ? {} : (
    var.database_instance_per_service ? { for svc in keys(local.services) : svc => [svc] } : { shared = keys(local.services) }
  )
  instance_of = merge([for instance, svcs in local.database_instances : { for svc in svcs : svc => instance }]...)

  database_user = "saga_admin"

  secret_names = {
    database_url   = { for svc in keys(local.services) : svc => "${local.physical_prefix}order-saga/${svc}/database-url" }
    operator_token = "${local.physical_prefix}order-saga/operator-token"
  }
  # Secrets Manager adds a random suffix to secret ARNs; "-??????" matches exactly it.
  secret_arns = {
    database_url   = { for svc, name in local.secret_names.database_url : svc => "arn:${local.partition}:secretsmanager:${var.aws_region}:${local.account_id}:secret:${name}-??????" }
    operator_token = "arn:${local.partition}:secretsmanager:${var.aws_region}:${local.account_id}:secret:${local.secret_names.operator_token}-??????"
  }
  secrets_kms_key = var.logs_kms_key_arn == "" ? null : var.logs_kms_key_arn
}

# Ephemeral: the generated passwords never reach the plan or the state; they are written
# once (write-only arguments) and again only when database_password_version changes.
ephemeral "aws_secretsmanager_random_password" "database" {
  for_each = local.database_instances

  password_length     = 40
  exclude_punctuation = true # the password goes into a URL unescaped
}

ephemeral "aws_secretsmanager_random_password" "operator_token" {
  count = var.deploy_services ? 1 : 0

  password_length     = 48
  exclude_punctuation = true
}

resource "aws_db_subnet_group" "main" {
  count = var.deploy_services ? 1 : 0

  name       = "${local.physical_prefix}order-saga"
  subnet_ids = local.private_subnet_ids
}

resource "aws_security_group" "database" {
  count = var.deploy_services ? 1 : 0

  name        = "${local.physical_prefix}order-saga-database"
  description = "PostgreSQL, reachable from the services only"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "database_from_services" {
  count = var.deploy_services ? 1 : 0

  security_group_id            = aws_security_group.database[0].id
  description                  = "PostgreSQL from the services"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.services[0].id
}

resource "aws_db_parameter_group" "postgres" {
  count = var.deploy_services ? 1 : 0

  name   = "${local.physical_prefix}order-saga-postgres${var.database_engine_version}"
  family = "postgres${var.database_engine_version}"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000" # statements slower than a second are logged
  }
}

resource "aws_db_instance" "main" {
  #checkov:skip=CKV_AWS_161:The services connect with a password from Secrets Manager; IAM database authentication needs a token refresh the code does not do.
  #checkov:skip=CKV_AWS_118:Enhanced monitoring needs its own role and costs extra; Performance Insights covers what the saga needs.
  #checkov:skip=CKV_AWS_157:Multi-AZ doubles the instance cost; it is the variable database_multi_az.
  #checkov:skip=CKV_AWS_293:Deletion protection is the variable database_deletion_protection (on by default).
  for_each = local.database_instances

  identifier     = "${local.physical_prefix}order-saga-${replace(each.key, "_", "-")}"
  engine         = "postgres"
  engine_version = var.database_engine_version
  instance_class = var.database_instance_class

  allocated_storage     = var.database_allocated_storage
  max_allocated_storage = var.database_allocated_storage * 10
  storage_type          = "gp3"
  storage_encrypted     = true

  username            = local.database_user
  password_wo         = ephemeral.aws_secretsmanager_random_password.database[each.key].random_password
  password_wo_version = var.database_password_version

  db_subnet_group_name   = aws_db_subnet_group.main[0].name
  vpc_security_group_ids = [aws_security_group.database[0].id]
  parameter_group_name   = aws_db_parameter_group.postgres[0].name
  publicly_accessible    = false
  multi_az               = var.database_multi_az

  backup_retention_period   = var.database_backup_retention_days
  copy_tags_to_snapshot     = true
  deletion_protection       = var.database_deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${local.physical_prefix}order-saga-${replace(each.key, "_", "-")}-final"

  auto_minor_version_upgrade      = true
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]
  performance_insights_enabled    = true
  performance_insights_kms_key_id = local.secrets_kms_key
}

resource "aws_secretsmanager_secret" "database_url" {
  #checkov:skip=CKV2_AWS_57:The URL embeds the instance's password; it is rotated by database_password_version (writes instance and secrets together), not by a rotation Lambda.
  for_each = local.deployed_services

  name        = local.secret_names.database_url[each.key]
  description = "Database URL of ${each.key} (its own database on RDS)."
  kms_key_id  = local.secrets_kms_key
}

resource "aws_secretsmanager_secret_version" "database_url" {
  for_each = local.deployed_services

  secret_id = aws_secretsmanager_secret.database_url[each.key].id
  secret_string_wo = format(
    "postgresql://%s:%s@%s:%d/%s?ssl=require",
    local.database_user,
    ephemeral.aws_secretsmanager_random_password.database[local.instance_of[each.key]].random_password,
    aws_db_instance.main[local.instance_of[each.key]].address,
    aws_db_instance.main[local.instance_of[each.key]].port,
    each.key, # one database per service, named after it
  )
  secret_string_wo_version = var.database_password_version
}

resource "aws_secretsmanager_secret" "operator_token" {
  #checkov:skip=CKV2_AWS_57:A bearer token for people; rotate it by writing a new version (put-secret-value) and forcing a new deployment.
  count = var.deploy_services ? 1 : 0

  name        = local.secret_names.operator_token
  description = "Bearer token of the orchestrator's operator endpoints (SAGA_OPERATOR_TOKEN); sagactl needs it too."
  kms_key_id  = local.secrets_kms_key
}

resource "aws_secretsmanager_secret_version" "operator_token" {
  count = var.deploy_services ? 1 : 0

  secret_id                = aws_secretsmanager_secret.operator_token[0].id
  secret_string_wo         = ephemeral.aws_secretsmanager_random_password.operator_token[0].random_password
  secret_string_wo_version = 1
}
