# The services on AWS (deploy_services = true), planned offline against a mocked provider:
# least-privilege task roles, secrets never in plain environment, rolling deploys,
# graceful shutdown, auto scaling and the database.
mock_provider "aws" {
  override_during = plan
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_availability_zones" {
    defaults = { names = ["us-east-1a", "us-east-1b", "us-east-1c"] }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_vpc" {
    defaults = { cidr_block = "10.9.0.0/16" }
  }
  mock_resource "aws_iam_role" {
    defaults = { unique_id = "AROAMOCKEDTASKROLE0001", arn = "arn:aws:iam::123456789012:role/mocked" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mocked-AbCdEf" }
  }
  mock_resource "aws_db_instance" {
    defaults = {
      resource_id        = "db-MOCKEDRESOURCEID0001"
      address            = "db.mocked.us-east-1.rds.amazonaws.com"
      port               = 5432
      master_user_secret = [{ secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-mocked-AbCdEf", kms_key_id = "", secret_status = "active" }]
    }
  }
}

variables {
  name_prefix     = "saga"
  deploy_services = true
  image           = "123456789012.dkr.ecr.us-east-1.amazonaws.com/order-saga:1.0.0"
  certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"

  # What each service may reach, stated independently of infra/services.tf: a role that
  # can receive from, send to or publish to anything else fails the run below. Each consumer
  # may send to its own queues' dead-letter queues (a message whose handler keeps failing).
  expected_access = {
    order_svc = {
      receive = ["order-commands"]
      send    = ["orchestrator-commands", "orchestrator-replies.fifo", "order-commands-dlq"]
      publish = ["order-events"]
    }
    orchestrator = {
      receive = ["orchestrator-commands", "orchestrator-replies.fifo", "saga-escalations",
        "order-commands-dlq", "inventory-commands-dlq", "payment-commands-dlq", "fulfillment-commands-dlq",
      "notification-commands-dlq", "orchestrator-commands-dlq", "orchestrator-replies-dlq.fifo"]
      send = ["order-commands", "inventory-commands", "payment-commands", "fulfillment-commands",
        "notification-commands", "orchestrator-commands", "orchestrator-replies.fifo", "saga-escalations",
      "orchestrator-commands-dlq", "orchestrator-replies-dlq.fifo"]
      publish = []
    }
    inventory_svc    = { receive = ["inventory-commands"], send = ["orchestrator-replies.fifo", "inventory-commands-dlq"], publish = [] }
    payment_svc      = { receive = ["payment-commands"], send = ["orchestrator-replies.fifo", "payment-commands-dlq"], publish = [] }
    fulfillment_svc  = { receive = ["fulfillment-commands"], send = ["orchestrator-replies.fifo", "fulfillment-commands-dlq"], publish = [] }
    notification_svc = { receive = ["notification-commands"], send = ["orchestrator-replies.fifo", "notification-commands-dlq"], publish = ["customer-push"] }
  }
}

run "task_roles_reach_only_what_each_service_needs" {
  command = plan

  assert {
    condition     = toset(keys(aws_iam_role_policy.task)) == toset(keys(var.expected_access))
    error_message = "One task role per service."
  }
  assert {
    condition = alltrue([
      for svc, p in aws_iam_role_policy.task : toset(flatten([
        for s in jsondecode(p.policy).Statement : s.Resource if contains(flatten([s.Action]), "sqs:ReceiveMessage")
      ])) == toset([for q in var.expected_access[svc].receive : "arn:aws:sqs:us-east-1:123456789012:saga-${q}"])
    ])
    error_message = "A task role may receive from a queue it does not consume (or misses one it does)."
  }
  assert {
    condition = alltrue([
      for svc, p in aws_iam_role_policy.task : toset(flatten([
        for s in jsondecode(p.policy).Statement : s.Resource if contains(flatten([s.Action]), "sqs:SendMessage")
      ])) == toset([for q in var.expected_access[svc].send : "arn:aws:sqs:us-east-1:123456789012:saga-${q}"])
    ])
    error_message = "A task role may send to a queue it does not need (or misses one it does)."
  }
  assert {
    condition = alltrue([
      for svc, p in aws_iam_role_policy.task : toset(flatten([
        for s in jsondecode(p.policy).Statement : s.Resource if contains(flatten([s.Action]), "sns:Publish")
      ])) == toset([for t in var.expected_access[svc].publish : "arn:aws:sns:us-east-1:123456789012:saga-${t}"])
    ])
    error_message = "A task role may publish to a topic it does not need (or misses one it does)."
  }
  assert {
    # Everything a role names is one of its queues or topics, the SES identity (notification
    # only) or "*" for metrics, which the namespace condition limits.
    condition = alltrue(flatten([
      for svc, p in aws_iam_role_policy.task : [
        for s in jsondecode(p.policy).Statement : [
          for r in flatten([s.Resource]) :
          contains(concat(
            [for q in concat(var.expected_access[svc].receive, var.expected_access[svc].send) : "arn:aws:sqs:us-east-1:123456789012:saga-${q}"],
            [for t in var.expected_access[svc].publish : "arn:aws:sns:us-east-1:123456789012:saga-${t}"],
            svc == "notification_svc" ? ["arn:aws:ses:us-east-1:123456789012:identity/orders@shop.example"] : [],
            ["arn:aws:rds-db:us-east-1:123456789012:dbuser:db-MOCKEDRESOURCEID0001/${svc}"], # its own login
          ), r) || (r == "*" && s.Action == "cloudwatch:PutMetricData" && try(s.Condition.StringEquals["cloudwatch:namespace"], "") == "OrderSaga")
        ]
      ]
    ]))
    error_message = "A task role names a resource outside its queues, topics and sender identity, or puts metrics outside the OrderSaga namespace."
  }
  assert {
    condition = toset(flatten([
      for s in jsondecode(aws_iam_role_policy.task["orchestrator"].policy).Statement : s.Resource
      if contains(flatten([s.Action]), "sqs:StartMessageMoveTask")
      ])) == toset([for q in ["order-commands", "inventory-commands", "payment-commands", "fulfillment-commands", "notification-commands",
    "orchestrator-commands", "orchestrator-replies.fifo"] : "arn:aws:sqs:us-east-1:123456789012:saga-${trimsuffix(q, ".fifo")}-dlq${endswith(q, ".fifo") ? ".fifo" : ""}"])
    error_message = "The orchestrator may start message move tasks on the dead-letter queues only."
  }
}

run "topics_admit_only_their_publishers" {
  command = plan

  assert {
    condition = [
      for s in jsondecode(aws_sns_topic_policy.topic["order-events"].policy).Statement : s.Principal if s.Effect == "Allow"
    ] == [{ AWS = ["arn:aws:iam::123456789012:role/saga-order-svc-task"] }]
    error_message = "Only order_svc's task role may publish to order-events."
  }
  assert {
    condition = anytrue([
      for s in jsondecode(aws_sns_topic_policy.topic["customer-push"].policy).Statement :
      s.Effect == "Deny" && try(s.Condition.ArnNotEquals["aws:PrincipalArn"], []) == ["arn:aws:iam::123456789012:role/saga-notification-svc-task"]
    ])
    error_message = "Every principal but notification_svc's task role must be denied publishing to customer-push."
  }
  assert {
    condition     = aws_iam_role.task["order_svc"].name == "saga-order-svc-task"
    error_message = "The topic policies name the task roles by these names."
  }
}

run "queues_admit_only_the_topologys_senders" {
  command = plan

  assert {
    # Every queue denies sqs:SendMessage to every IAM principal but the task roles that
    # var.expected_access lets send there; a dead-letter queue denies every sender.
    condition = alltrue([
      for name, p in aws_sqs_queue_policy.queue : anytrue([
        for s in jsondecode(p.policy).Statement :
        s.Effect == "Deny" && s.Principal == "*" && s.Action == "sqs:SendMessage" && try(s.Condition.Null["aws:PrincipalArn"], "") == "false" &&
        toset(try(s.Condition.ArnNotEquals["aws:PrincipalArn"], [])) == toset([
          for svc, a in var.expected_access : "arn:aws:iam::123456789012:role/saga-${replace(svc, "_", "-")}-task"
          if contains(a.send, trimprefix(s.Resource, "arn:aws:sqs:us-east-1:123456789012:saga-"))
        ])
      ])
    ])
    error_message = "A queue's policy lets a principal send that the topology does not name (or refuses one it does)."
  }
  assert {
    condition = alltrue([
      for name, p in aws_sqs_queue_policy.queue : anytrue([
        for s in jsondecode(p.policy).Statement : s.Sid == "DenySendersOtherThanTopology" && toset(try(s.Condition.ArnNotEquals["aws:PrincipalArn"], [])) == toset([
          for svc, a in var.expected_access : "arn:aws:iam::123456789012:role/saga-${replace(svc, "_", "-")}-task"
          if contains(a.receive, replace(replace(name, "-dlq", ""), ".fifo", "")) || contains(a.receive, "${replace(name, "-dlq", "")}.fifo")
        ])
      ]) if endswith(name, "-dlq")
    ])
    error_message = "A dead-letter queue takes sends from its queue's consumer alone."
  }
  assert {
    condition = toset([
      for s in jsondecode(aws_sqs_queue_policy.queue["payment-commands"].policy).Statement : try(s.Condition.ArnNotEquals["aws:PrincipalArn"], []) if s.Sid == "DenySendersOtherThanTopology"
    ][0]) == toset(["arn:aws:iam::123456789012:role/saga-orchestrator-task"])
    error_message = "Only the orchestrator may send to payment-commands (a refund is a command)."
  }
  assert {
    # The receivers check SQS's SenderId against each sender's task role.
    condition = alltrue([
      for svc, td in aws_ecs_task_definition.service : toset(keys(jsondecode(one([
        for e in jsondecode(td.container_definitions)[0].environment : e.value if e.name == "SAGA_SENDER_PRINCIPALS"
      ])))) == toset(["order", "orchestrator", "inventory", "payment", "fulfillment", "notification"])
    ])
    error_message = "Every task must know each sender's principal (SAGA_SENDER_PRINCIPALS)."
  }
}

run "the_load_balancer_routes_only_the_public_paths_behind_a_waf" {
  command = plan

  assert {
    condition     = aws_lb_listener.https[0].default_action[0].type == "fixed-response" && aws_lb_listener.https[0].default_action[0].fixed_response[0].status_code == "404"
    error_message = "A path the rules do not name must get the load balancer's 404, never order_svc."
  }
  assert {
    condition = toset(flatten([
      for r in aws_lb_listener_rule.public : [
        for m in one([for c in r.condition : c.http_request_method[0].values if length(c.http_request_method) > 0]) : [
          for p in one([for c in r.condition : c.path_pattern[0].values if length(c.path_pattern) > 0]) : "${m} ${p}"
        ]
      ]
    ])) == toset(["POST /orders", "POST /orders/*/cancel", "GET /orders/*", "HEAD /orders/*"])
    error_message = "The load balancer must forward exactly placing, cancelling and reading an order (not GET /orders, /metrics or /docs)."
  }
  assert {
    condition     = alltrue([for r in aws_lb_listener_rule.public : r.action[0].type == "forward"])
    error_message = "The public rules forward to order_svc."
  }
  assert {
    condition = length(aws_wafv2_web_acl.public) == 1 && length(aws_wafv2_web_acl_association.public) == 1 && anytrue([
      for rule in aws_wafv2_web_acl.public[0].rule :
      length(rule.statement[0].rate_based_statement) == 1 && rule.statement[0].rate_based_statement[0].aggregate_key_type == "IP" && length(rule.action[0].block) == 1
    ])
    error_message = "By default a WAF with a rate-based rule per address blocks on the public load balancer."
  }
}

run "the_waf_can_be_switched_off" {
  command = plan

  variables {
    waf_enabled = false
  }

  assert {
    condition     = length(aws_wafv2_web_acl.public) == 0 && length(aws_wafv2_web_acl_association.public) == 0
    error_message = "waf_enabled = false must remove the WAF."
  }
}

run "no_task_of_a_service_gets_the_master_secret_and_no_secret_is_in_the_plan" {
  command = plan

  assert {
    condition = alltrue([
      for svc, td in aws_ecs_task_definition.service : toset([for s in jsondecode(td.container_definitions)[0].secrets : s.name]) == toset(concat(
        ["SAGA_OPERATOR_TOKEN"], svc == "orchestrator" ? ["ORCHESTRATOR_OPERATOR_TOKEN"] : [],
      ))
    ])
    error_message = "A service's only secret is the bootstrap operator token: it has no database password."
  }
  assert {
    condition = alltrue(flatten([
      for td in aws_ecs_task_definition.service : [
        for s in jsondecode(td.container_definitions)[0].secrets : !contains([for i in aws_db_instance.main : i.master_user_secret[0].secret_arn], s.valueFrom)
      ]
    ]))
    error_message = "No task definition of a service may receive the master secret."
  }
  assert {
    condition = alltrue([
      for svc, p in aws_iam_role_policy.execution : [
        for s in jsondecode(p.policy).Statement : s.Resource if s.Action == "secretsmanager:GetSecretValue"
      ] == [["arn:aws:secretsmanager:us-east-1:123456789012:secret:saga-order-saga/operator-token-??????"]]
    ])
    error_message = "A service's execution role may read the operator token, nothing else."
  }
  assert {
    condition = alltrue(flatten([
      for svc, td in aws_ecs_task_definition.service : [
        for e in jsondecode(td.container_definitions)[0].environment :
        !strcontains(e.name, "TOKEN") && !strcontains(e.name, "PASSWORD") && (
          !endswith(e.name, "DATABASE_URL") || can(regex("^postgresql://${svc}@[^:/]+:5432/${svc}\\?ssl=verify-full$", e.value))
        )
      ]
    ]))
    error_message = "A service's database URL names its own login and database, holds no password, and verifies the server (verify-full); no token is plain environment."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : contains([for e in jsondecode(td.container_definitions)[0].environment : "${e.name}=${e.value}"], "DATABASE_IAM_AUTH=true")
      && contains([for e in jsondecode(td.container_definitions)[0].environment : "${e.name}=${e.value}"], "PGSSLROOTCERT=/etc/ssl/certs/rds-global-bundle.pem")
    ])
    error_message = "Every service signs in with IAM and verifies the RDS certificate against the bundle in the image."
  }
  assert {
    condition = alltrue([
      for svc, p in aws_iam_role_policy.task : [
        for s in jsondecode(p.policy).Statement : s.Resource if s.Action == "rds-db:connect"
      ] == ["arn:aws:rds-db:us-east-1:123456789012:dbuser:db-MOCKEDRESOURCEID0001/${svc}"]
    ])
    error_message = "A service's task role may connect as its own login only."
  }
  assert {
    condition = alltrue([
      for i in aws_db_instance.main : i.manage_master_user_password == true && i.iam_database_authentication_enabled == true && i.password == null && i.password_wo == null
    ])
    error_message = "RDS keeps the master password itself (manage_master_user_password): neither plan nor state holds it."
  }
  assert {
    condition = alltrue([
      for key, td in aws_ecs_task_definition.bootstrap : [for s in jsondecode(td.container_definitions)[0].secrets : s.valueFrom] == [aws_db_instance.main[key].master_user_secret[0].secret_arn]
    ])
    error_message = "The bootstrap task alone reads the master secret."
  }
  assert {
    condition     = alltrue([for p in aws_db_parameter_group.postgres[0].parameter : p.value == "1" if p.name == "rds.force_ssl"])
    error_message = "RDS refuses connections without TLS."
  }
}

run "containers_listen_on_all_interfaces_and_run_their_service" {
  command = plan

  assert {
    condition = alltrue([
      for svc, td in aws_ecs_task_definition.service :
      jsondecode(td.container_definitions)[0].command == ["python", "-m", svc]
      && contains([for e in jsondecode(td.container_definitions)[0].environment : "${e.name}=${e.value}"], "${upper(trimsuffix(trimsuffix(svc, "_svc"), "_"))}_HOST=0.0.0.0")
      && jsondecode(td.container_definitions)[0].logConfiguration.logDriver == "awslogs"
    ])
    error_message = "Each task runs python -m <service>, listens on 0.0.0.0 and logs to CloudWatch Logs."
  }
}

run "rolling_deploys_and_graceful_shutdown" {
  command = plan

  assert {
    condition = alltrue([
      for s in aws_ecs_service.service :
      s.deployment_minimum_healthy_percent == 100 && s.deployment_maximum_percent == 200
      && s.deployment_circuit_breaker[0].enable && s.deployment_circuit_breaker[0].rollback
    ])
    error_message = "Rolling deploys run old and new tasks side by side and roll back when the new ones fail."
  }
  assert {
    condition     = length(aws_ecs_service.service) == 6 && toset([for s in aws_ecs_service.service : s.launch_type]) == toset(["FARGATE"])
    error_message = "One Fargate service per process, the orchestrator included."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service :
      jsondecode(td.container_definitions)[0].stopTimeout > aws_lb_target_group.order[0].deregistration_delay - 1
      && jsondecode(td.container_definitions)[0].healthCheck.command[0] == "CMD"
    ])
    error_message = "Tasks get a health check and at least the deregistration delay to finish their work after SIGTERM."
  }
  assert {
    condition     = aws_lb_target_group.order[0].health_check[0].path == "/health" && aws_lb_listener.https[0].certificate_arn == var.certificate_arn && aws_lb_listener.https[0].protocol == "HTTPS"
    error_message = "The public order API terminates TLS with the given certificate and checks /health."
  }
  assert {
    condition     = length([for s in aws_ecs_service.service : s if length(s.load_balancer) > 0]) == 1 && length(aws_ecs_service.service["order_svc"].load_balancer) == 1
    error_message = "Only order_svc is behind the public load balancer."
  }
}

run "workers_scale_on_their_queue_backlog" {
  command = plan

  assert {
    condition = alltrue([
      for svc, p in aws_appautoscaling_policy.backlog : toset(flatten([
        for m in p.target_tracking_scaling_policy_configuration[0].customized_metric_specification[0].metrics : [
          for ms in m.metric_stat : [for d in ms.metric[0].dimensions : d.value if d.name == "QueueName"]
        ]
      ])) == toset([for q in var.expected_access[svc].receive : "saga-${q}" if !strcontains(q, "dlq") && q != "saga-escalations"])
    ])
    error_message = "Each service scales on the backlog of exactly the queues it consumes."
  }
}

run "one_database_instance_by_default" {
  command = plan

  assert {
    condition     = keys(aws_db_instance.main) == ["shared"] && aws_db_instance.main["shared"].backup_retention_period >= 1 && aws_db_instance.main["shared"].storage_encrypted && !aws_db_instance.main["shared"].publicly_accessible
    error_message = "One encrypted, private RDS instance with backups holds every service's database by default."
  }
  assert {
    condition     = aws_db_instance.main["shared"].deletion_protection
    error_message = "Deletion protection is on by default."
  }
}

run "one_database_instance_per_service_by_variable" {
  command = plan

  variables {
    database_instance_per_service = true
    database_deletion_protection  = false
  }

  assert {
    condition     = toset(keys(aws_db_instance.main)) == toset(keys(var.expected_access)) && !aws_db_instance.main["payment_svc"].deletion_protection
    error_message = "database_instance_per_service gives each service its own instance."
  }
}

run "existing_network" {
  command = plan

  variables {
    vpc_id             = "vpc-0123456789abcdef0"
    public_subnet_ids  = ["subnet-a", "subnet-b"]
    private_subnet_ids = ["subnet-c", "subnet-d"]
  }

  assert {
    condition     = length(aws_vpc.main) == 0 && toset(aws_ecs_service.service["payment_svc"].network_configuration[0].subnets) == toset(["subnet-c", "subnet-d"])
    error_message = "With vpc_id the services run in the given private subnets and no VPC is created."
  }
}

run "tracing_off_by_default_one_container_and_no_exporter" {
  command = plan

  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service :
      length(jsondecode(td.container_definitions)) == 1
      && !anytrue([for e in jsondecode(td.container_definitions)[0].environment : startswith(e.name, "OTEL_")])
    ])
    error_message = "Without tracing a task runs its service alone and exports no spans."
  }
  assert {
    condition = !anytrue(flatten([
      for p in aws_iam_role_policy.task : [for s in jsondecode(p.policy).Statement : s.Sid == "SendTraces"]
    ]))
    error_message = "Without tracing no task role may write to X-Ray."
  }
}

run "tracing_adds_a_collector_the_exporter_settings_and_the_xray_permissions" {
  command = plan

  variables {
    tracing               = true
    tracing_sampler_ratio = 0.25
  }

  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service :
      [for c in jsondecode(td.container_definitions) : c.name][1] == "otel-collector"
      && !jsondecode(td.container_definitions)[1].essential
      && jsondecode(td.container_definitions)[0].dependsOn == [{ containerName = "otel-collector", condition = "START" }]
    ])
    error_message = "With tracing every task runs an ADOT collector beside its service, not essential, started first."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : length(setsubtract(
        ["OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318",
        "OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.25"],
        [for e in jsondecode(td.container_definitions)[0].environment : "${e.name}=${e.value}"]
      )) == 0
    ])
    error_message = "With tracing every service exports OTLP to the sidecar, sampling whole sagas."
  }
  assert {
    condition = anytrue([
      for e in jsondecode(aws_ecs_task_definition.service["orchestrator"].container_definitions)[0].environment :
      e.name == "ORCHESTRATOR_CONSOLE__TRACE_URL" && strcontains(e.value, "xray:traces/{xray_trace_id}")
    ])
    error_message = "The console links a saga to its trace in CloudWatch."
  }
  assert {
    condition = alltrue([
      for p in aws_iam_role_policy.task : contains(
        flatten([for s in jsondecode(p.policy).Statement : s.Action if s.Sid == "SendTraces"]), "xray:PutTraceSegments"
      )
    ])
    error_message = "With tracing every task role may send trace segments to X-Ray."
  }
}
