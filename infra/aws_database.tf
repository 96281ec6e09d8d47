# PostgreSQL on RDS: by default one instance holding one database per service; with
# database_instance_per_service, one instance each. The master password is RDS's own
# (manage_master_user_password: RDS keeps it in Secrets Manager, Terraform never sees it),
# read only by the one-off bootstrap task (aws_bootstrap.tf), which gives each service a
# login of its own that owns its database and can open no other. The services sign in
# with IAM tokens of their task roles (no password anywhere) over TLS that verifies the
# server's certificate against the RDS CA bundle in the image.
locals {
  database_instances = !var.deploy_services ? {} : (
    var.database_instance_per_service ? { for svc in keys(local.services) : svc => [svc] } : { shared = keys(local.services) }
  )
  instance_of = merge([for instance, svcs in local.database_instances : { for svc in svcs : svc => instance }]...)

  database_user = "saga_admin"

  secret_names = {
    operator_token = "${local.physical_prefix}order-saga/operator-token"
  }
  # Secrets Manager adds a random suffix to secret ARNs; "-??????" matches exactly it.
  secret_arns = {
    operator_token = "arn:${local.partition}:secretsmanager:${var.aws_region}:${local.account_id}:secret:${local.secret_names.operator_token}-??????"
  }
  # Where the image keeps the RDS certificate authorities (Dockerfile): TLS is verify-full.
  rds_ca_bundle = "/etc/ssl/certs/rds-global-bundle.pem"
  # Each service's own login (named after its database) on its instance: no password in it.
  database_urls = {
    for svc in keys(local.deployed_services) : svc => format(
      "postgresql://%s@%s:%d/%s?ssl=verify-full",
      svc,
      aws_db_instance.main[local.instance_of[svc]].address,
      aws_db_instance.main[local.instance_of[svc]].port,
      svc, # one database per service, named after it
    )
  }
  secrets_kms_key = var.logs_kms_key_arn == "" ? null : var.logs_kms_key_arn
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

  # No statement logging: PostgreSQL would log bound parameters, email addresses included.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  # The limit the connection budget is drawn up against (aws_connection_budget.tf), not
  # RDS's default of a little less. Static: an existing instance takes it at its next reboot.
  parameter {
    name         = "max_connections"
    value        = tostring(local.database_connection_limit)
    apply_method = "pending-reboot"
  }
}

resource "aws_db_instance" "main" {
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

  username = local.database_user
  # RDS draws the master password and keeps it in Secrets Manager (rotated by RDS); the plan
  # and the state hold only the secret's ARN. The bootstrap task alone reads it.
  manage_master_user_password   = true
  master_user_secret_kms_key_id = local.secrets_kms_key
  # The services sign in with IAM tokens of their task roles (rds-db:connect on their own login).
  iam_database_authentication_enabled = true

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

  lifecycle {
    precondition {
      condition     = length([for svc in local.below_minimum_pool : svc if local.instance_of[svc] == each.key]) == 0
      error_message = "Connection budget too small on ${each.key}: the tasks of ${join(", ", [for svc in local.below_minimum_pool : svc if local.instance_of[svc] == each.key])} would get fewer than ${local.minimum_main_pool} main connections (DB_POOL_SIZE + DB_MAX_OVERFLOW) and ${local.minimum_relay_pool} for the relay. Pick a larger database_instance_class (db.t4g.small or larger for the default max_tasks), lower max_tasks in service_settings, or set database_instance_per_service."
    }
    precondition {
      condition     = local.database_peak_connections[each.key] <= local.database_connection_limit
      error_message = "Connection budget exceeded on ${each.key}: its services' tasks (max_tasks, doubled during a rolling deploy) could open ${local.database_peak_connections[each.key] - local.database_reserved_connections} connections; with the ${local.database_reserved_connections} reserved that is ${local.database_peak_connections[each.key]}, and ${var.database_instance_class} allows ${local.database_connection_limit}. Lower max_tasks or the pool sizes in service_settings, pick a larger database_instance_class, or set database_instance_per_service."
    }
  }
}

resource "aws_secretsmanager_secret" "operator_token" {
  #checkov:skip=CKV2_AWS_57:The bootstrap token is for issuing personal tokens and break-glass; personal tokens rotate with sagactl, this one by writing a new version (with the old as SAGA_OPERATOR_TOKEN_PREVIOUS) and forcing a new deployment.
  count = var.deploy_services ? 1 : 0

  name        = local.secret_names.operator_token
  description = "The bootstrap operator token (SAGA_OPERATOR_TOKEN): written by the bootstrap task when empty, never by Terraform."
  kms_key_id  = local.secrets_kms_key
}
