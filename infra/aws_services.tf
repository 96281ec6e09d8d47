# The six services on ECS Fargate, one ECS service per process, all from one image (the
# command picks the service). order_svc's API is public behind an HTTPS load balancer;
# everything else (the saga API with its operator endpoints, the other services' APIs) is
# reachable inside the VPC only, by name through Cloud Map service discovery: no second
# load balancer to pay for, and nothing internal is ever routable from the internet.
locals {
  container_port = 8080
  cluster_name   = "${local.physical_prefix}order-saga"

  service_sizes = {
    for svc in keys(local.services) : svc => merge(
      { cpu = 256, memory = 512, min_tasks = 1, max_tasks = 4, db_pool_size = null, db_max_overflow = null, relay_pool_size = null },
      try(var.service_settings[svc], {}),
    )
  }

  # The services stop receiving on SIGTERM and finish in-flight handlers within a few
  # seconds. ECS first drains the load balancer target (deregistration_delay), then sends
  # SIGTERM and waits stop_timeout before SIGKILL: both leave them ample time, while a
  # rolling deploy is not held up for the default five minutes.
  deregistration_delay = 20
  stop_timeout         = 30

  # A rolling deploy starts the new tasks beside the old ones (see aws_ecs_service.service);
  # the connection budget counts them.
  deployment_maximum_percent = 200

  log_group_names = { for svc in keys(local.services) : svc => "/ecs/${local.cluster_name}/${svc}" }
  log_group_arns  = { for svc, name in local.log_group_names : svc => "arn:${local.partition}:logs:${var.aws_region}:${local.account_id}:log-group:${name}" }

  discovery_namespace = join(".", compact([var.name_prefix, "order-saga", "internal"]))
}

resource "aws_ecs_cluster" "main" {
  count = var.deploy_services ? 1 : 0
  name  = local.cluster_name

  setting {
    name  = "containerInsights" # RunningTaskCount, used by the auto scaling below
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "service" {
  #checkov:skip=CKV_AWS_338:Retention is the variable log_retention_days (30 days by default: logs are for debugging; the saga history is in the orchestrator's database).
  for_each = local.deployed_services

  name              = local.log_group_names[each.key]
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn == "" ? null : var.logs_kms_key_arn
}

resource "aws_service_discovery_private_dns_namespace" "internal" {
  count = var.deploy_services ? 1 : 0

  name        = local.discovery_namespace
  description = "Internal names of the order saga's services, e.g. orchestrator.${local.discovery_namespace}"
  vpc         = local.vpc_id
}

resource "aws_service_discovery_service" "service" {
  for_each = local.deployed_services

  name = replace(each.key, "_", "-")
  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.internal[0].id
    routing_policy = "MULTIVALUE"
    dns_records {
      type = "A"
      ttl  = 10
    }
  }
  health_check_custom_config {
    failure_threshold = 1
  }
}

resource "aws_security_group" "services" {
  count = var.deploy_services ? 1 : 0

  name        = "${local.physical_prefix}order-saga-services"
  description = "The services' tasks"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "services_from_alb" {
  count = var.deploy_services ? 1 : 0

  security_group_id            = aws_security_group.services[0].id
  description                  = "HTTP from the public load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.container_port
  to_port                      = local.container_port
  referenced_security_group_id = aws_security_group.alb[0].id
}

resource "aws_vpc_security_group_ingress_rule" "services_internal" {
  for_each = var.deploy_services ? toset(concat([local.vpc_cidr], var.operator_cidr_blocks)) : toset([])

  security_group_id = aws_security_group.services[0].id
  description       = "HTTP inside the VPC (service discovery) and from operators' networks"
  ip_protocol       = "tcp"
  from_port         = local.container_port
  to_port           = local.container_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "services_out" {
  count = var.deploy_services ? 1 : 0

  security_group_id = aws_security_group.services[0].id
  description       = "HTTPS to the AWS APIs and the image registry (through the NAT gateway), PostgreSQL"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_ecs_task_definition" "service" {
  for_each = local.deployed_services

  family                   = "${local.cluster_name}-${replace(each.key, "_", "-")}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = local.service_sizes[each.key].cpu
  memory                   = local.service_sizes[each.key].memory
  task_role_arn            = aws_iam_role.task[each.key].arn
  execution_role_arn       = aws_iam_role.execution[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # The root filesystem is read-only; /tmp is the one writable place (task storage).
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode(concat([{
    name                   = each.key
    image                  = var.image
    command                = ["python", "-m", each.key]
    essential              = true
    readonlyRootFilesystem = true
    stopTimeout            = local.stop_timeout
    portMappings           = [{ containerPort = local.container_port, protocol = "tcp" }]
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]

    environment = [
      for name, value in merge(var.service_environment, {
        "${each.value.env_prefix}HOST" = "0.0.0.0"
        "${each.value.env_prefix}PORT" = tostring(local.container_port)
        SAGA_RESOURCE_PREFIX           = var.name_prefix
        AWS_REGION                     = var.aws_region
        NOTIFICATION_SENDER_EMAIL      = var.sender_email
        # Who may have sent what this task receives: each sender's task role id, the SenderId
        # SQS stamps on its messages (libs/messaging/trust.py, docs/design.md#security).
        SAGA_SENDER_PRINCIPALS = local.sender_principals
        # Its own login, signed in with an IAM token, over TLS that verifies the server.
        "${each.value.env_prefix}DATABASE_URL" = local.database_urls[each.key]
        DATABASE_IAM_AUTH                      = "true"
        PGSSLROOTCERT                          = local.rds_ca_bundle
        }, each.key == "orchestrator" ? {} : {
        # Whose an operator's personal token is: the orchestrator says (messaging/identity.py).
        SAGA_IDENTITY_URL = "http://orchestrator.${local.discovery_namespace}:${local.container_port}"
        }, {
        # The connection budget's share of this task (aws_connection_budget.tf).
        for setting, size in local.database_pools[each.key] : setting => tostring(size)
      }, local.tracing_environment[each.key]) : { name = name, value = value }
    ]
    # Never plain environment: ECS reads these from Secrets Manager at start.
    # No database password exists: only the bootstrap token is a secret.
    secrets = concat(
      [
        { name = "SAGA_OPERATOR_TOKEN", valueFrom = aws_secretsmanager_secret.operator_token[0].arn },
      ],
      each.key == "orchestrator" ? [{ name = "ORCHESTRATOR_OPERATOR_TOKEN", valueFrom = aws_secretsmanager_secret.operator_token[0].arn }] : [],
    )

    healthCheck = {
      command     = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${local.container_port}/health', timeout=3)"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 60 # migrations run at start
    }

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
        awslogs-region        = var.aws_region
        awslogs-stream-prefix = "ecs"
      }
    }
    dependsOn = var.tracing ? [{ containerName = "otel-collector", condition = "START" }] : []
    }], var.tracing ? [{
    # Receives the service's OTLP on localhost:4318 and sends it to X-Ray (the image's
    # default ECS configuration); not essential: a collector that dies costs traces, not orders.
    name                   = "otel-collector"
    image                  = var.tracing_collector_image
    command                = ["--config=/etc/ecs/ecs-default-config.yaml"]
    essential              = false
    readonlyRootFilesystem = true
    memoryReservation      = 64
    environment            = [{ name = "AWS_REGION", value = var.aws_region }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
        awslogs-region        = var.aws_region
        awslogs-stream-prefix = "otel"
      }
    }
  }] : []))
}

locals {
  # Keyed by the name each service sends under (Envelope.sender): order_svc sends as "order".
  sender_principals = jsonencode({ for svc, role in aws_iam_role.task : trimsuffix(svc, "_svc") => role.unique_id })

  # With tracing on, every service exports its spans to the sidecar; the console links a saga
  # to its trace in CloudWatch (X-Ray's trace id is the W3C one, written 1-<8 hex>-<24 hex>).
  tracing_environment = {
    for svc in keys(local.deployed_services) : svc => var.tracing ? merge({
      OTEL_TRACES_EXPORTER        = "otlp"
      OTEL_EXPORTER_OTLP_ENDPOINT = "http://localhost:4318"
      OTEL_TRACES_SAMPLER         = "parentbased_traceidratio"
      OTEL_TRACES_SAMPLER_ARG     = tostring(var.tracing_sampler_ratio)
      OTEL_SERVICE_NAME           = var.name_prefix
      }, svc == "orchestrator" ? {
      ORCHESTRATOR_CONSOLE__TRACE_URL = "https://${var.aws_region}.console.aws.amazon.com/cloudwatch/home?region=${var.aws_region}#xray:traces/{xray_trace_id}"
    } : {}) : {}
  }
}

resource "aws_ecs_service" "service" {
  for_each = local.deployed_services

  name            = each.key
  cluster         = aws_ecs_cluster.main[0].id
  task_definition = aws_ecs_task_definition.service[each.key].arn
  launch_type     = "FARGATE"
  desired_count   = local.service_sizes[each.key].min_tasks

  # Rolling deploy: new tasks start beside the old ones, which stop only once the new ones
  # are healthy; a deploy that does not become healthy is rolled back. Hence migrations
  # must be expand-then-contract (old code must run against the new schema).
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = local.deployment_maximum_percent
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  health_check_grace_period_seconds = each.key == "order_svc" ? 60 : null

  network_configuration {
    subnets          = local.private_subnet_ids
    security_groups  = [aws_security_group.services[0].id]
    assign_public_ip = false
  }

  service_registries {
    registry_arn = aws_service_discovery_service.service[each.key].arn
  }

  dynamic "load_balancer" {
    for_each = each.key == "order_svc" ? [aws_lb_target_group.order[0].arn] : []
    content {
      target_group_arn = load_balancer.value
      container_name   = each.key
      container_port   = local.container_port
    }
  }

  lifecycle {
    ignore_changes = [desired_count] # owned by the auto scaling once running
  }

  depends_on = [
    aws_lb_listener.https,
    aws_iam_role_policy.execution,
  ]
}

# --- the public order API ------------------------------------------------------------------

resource "aws_security_group" "alb" {
  count = var.deploy_services ? 1 : 0

  name        = "${local.physical_prefix}order-saga-alb"
  description = "Public load balancer of the order API"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "alb" {
  for_each = var.deploy_services ? { for pair in setproduct([443, 80], var.public_ingress_cidr_blocks) : "${pair[0]}/${pair[1]}" => pair } : {}

  security_group_id = aws_security_group.alb[0].id
  description       = each.value[0] == 80 ? "HTTP, redirected to HTTPS" : "HTTPS"
  ip_protocol       = "tcp"
  from_port         = each.value[0]
  to_port           = each.value[0]
  cidr_ipv4         = each.value[1]
}

resource "aws_vpc_security_group_egress_rule" "alb_to_services" {
  count = var.deploy_services ? 1 : 0

  security_group_id            = aws_security_group.alb[0].id
  description                  = "To the order service's tasks"
  ip_protocol                  = "tcp"
  from_port                    = local.container_port
  to_port                      = local.container_port
  referenced_security_group_id = aws_security_group.services[0].id
}

resource "aws_lb" "public" {
  #checkov:skip=CKV_AWS_91:Access logs need an S3 bucket with its own policy and retention; the order service logs every request.
  #checkov:skip=CKV2_AWS_28:The WAF (aws_wafv2_web_acl.public) is attached by default; waf_enabled = false removes it.
  #checkov:skip=CKV2_AWS_76:The managed Log4j rule set guards Java applications; the order API is Python.
  #checkov:skip=CKV_AWS_150:Deletion protection is the variable alb_deletion_protection (off so that the stack can be destroyed in one step).
  count = var.deploy_services ? 1 : 0

  name                       = "${local.physical_prefix}order-api"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = local.public_subnet_ids
  security_groups            = [aws_security_group.alb[0].id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection
}

resource "aws_lb_target_group" "order" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; the tasks listen on plain HTTP in the private subnets, reachable from its security group alone.
  count = var.deploy_services ? 1 : 0

  name                 = "${local.physical_prefix}order-api"
  port                 = local.container_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = local.vpc_id
  deregistration_delay = local.deregistration_delay

  health_check {
    path                = "/health"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "https" {
  count = var.deploy_services ? 1 : 0

  load_balancer_arn = aws_lb.public[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  # Only the public order API (the rules below) reaches order_svc; everything else it serves
  # (/metrics, /docs, the operator listing GET /orders?customer_id=) stays inside the VPC.
  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json" # the problem document; ALB offers no application/problem+json
      message_body = jsonencode({ type = "about:blank", title = "Not Found", status = 404, detail = "no such resource" })
      status_code  = "404"
    }
  }
}

locals {
  # The public paths, by method: place an order, cancel one, read one. Anything else gets the
  # listener's 404, whatever order_svc would have answered.
  public_routes = {
    place_or_cancel = { priority = 10, methods = ["POST"], paths = ["/orders", "/orders/*/cancel"] }
    read            = { priority = 20, methods = ["GET", "HEAD"], paths = ["/orders/*"] }
  }
}

resource "aws_lb_listener_rule" "public" {
  for_each = var.deploy_services ? local.public_routes : {}

  listener_arn = aws_lb_listener.https[0].arn
  priority     = each.value.priority

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.order[0].arn
  }
  condition {
    http_request_method {
      values = each.value.methods
    }
  }
  condition {
    path_pattern {
      values = each.value.paths
    }
  }
}

# A rate-based rule per client address in front of the order API, on unless waf_enabled is
# false: one address above waf_requests_per_5_minutes is blocked until it slows down.
resource "aws_wafv2_web_acl" "public" {
  #checkov:skip=CKV2_AWS_31:WAF logging needs a log group or bucket named aws-waf-logs-*, with its own retention; the sampled requests and metrics are kept.
  #checkov:skip=CKV_AWS_192:The managed Log4j rule set guards Java applications; the order API is Python.
  count = var.deploy_services && var.waf_enabled ? 1 : 0

  name        = "${local.physical_prefix}order-api"
  description = "Rate limit per client address on the public order API"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  rule {
    name     = "rate-per-address"
    priority = 1
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit              = var.waf_requests_per_5_minutes
        aggregate_key_type = "IP"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.physical_prefix}order-api-rate"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${local.physical_prefix}order-api"
    sampled_requests_enabled   = true
  }
}

resource "aws_wafv2_web_acl_association" "public" {
  count = var.deploy_services && var.waf_enabled ? 1 : 0

  resource_arn = aws_lb.public[0].arn
  web_acl_arn  = aws_wafv2_web_acl.public[0].arn
}

resource "aws_lb_listener" "http_redirect" {
  count = var.deploy_services ? 1 : 0

  load_balancer_arn = aws_lb.public[0].arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"
    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

# --- auto scaling on each service's queue backlog ------------------------------------------

resource "aws_appautoscaling_target" "service" {
  for_each = local.deployed_services

  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.main[0].name}/${aws_ecs_service.service[each.key].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = local.service_sizes[each.key].min_tasks
  max_capacity       = local.service_sizes[each.key].max_tasks
}

# Target tracking on messages waiting per running task (AWS's recommended backlog metric
# for queue workers): the visible messages of the service's queues over its task count.
resource "aws_appautoscaling_policy" "backlog" {
  for_each = local.deployed_services

  name               = "${each.key}-backlog-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.service[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.service[each.key].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.backlog_per_task
    scale_in_cooldown  = 120
    scale_out_cooldown = 30

    customized_metric_specification {
      dynamic "metrics" {
        for_each = each.value.consumes
        content {
          id          = "q${metrics.key}"
          return_data = false
          metric_stat {
            stat = "Sum"
            metric {
              namespace   = "AWS/SQS"
              metric_name = "ApproximateNumberOfMessagesVisible"
              dimensions {
                name  = "QueueName"
                value = local.physical[metrics.value]
              }
            }
          }
        }
      }
      metrics {
        id          = "tasks"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"
            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.main[0].name
            }
            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.service[each.key].name
            }
          }
        }
      }
      metrics {
        id          = "backlog_per_task"
        label       = "Messages waiting per task"
        expression  = "(${join(" + ", [for i, _ in each.value.consumes : "q${i}"])}) / tasks"
        return_data = true
      }
    }
  }
}
