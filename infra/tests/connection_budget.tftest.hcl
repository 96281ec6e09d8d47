# The connection budget (aws_connection_budget.tf), planned offline against a mocked
# provider: with the default max_tasks every offered instance class holds every task of
# every service at once, a rolling deploy's doubling included; a plan whose tasks could
# open more connections than the database allows is refused.
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

  # RDS's default formula, LEAST(memory/9531392, 5000), on each class's memory, stated
  # independently of aws_connection_budget.tf.
  expected_max_connections = {
    "db.t4g.micro"   = 112
    "db.t4g.small"   = 225
    "db.t4g.medium"  = 450
    "db.t4g.large"   = 901
    "db.t4g.xlarge"  = 1802
    "db.t4g.2xlarge" = 3604
    "db.m7g.large"   = 901
    "db.m7g.xlarge"  = 1802
    "db.m7g.2xlarge" = 3604
    "db.r7g.large"   = 1802
    "db.r7g.xlarge"  = 3604
    "db.r7g.2xlarge" = 5000
  }
  # 6 services x 4 tasks (the default max_tasks) x 2 (deployment maximum percent 200).
  expected_peak_tasks = 48
  # RDS's superuser_reserved_connections (3) and database_operator_connections (5).
  expected_reserve = 8
}

run "the_default_plan_gives_every_task_at_least_the_minimum_pool" {
  command = plan

  assert {
    condition     = var.database_instance_class == "db.t4g.medium"
    error_message = "The default class is db.t4g.medium."
  }
  assert {
    # (450 - 8) / 48 = 9 a task: relay 2, 7 kept.
    condition = alltrue([
      for td in aws_ecs_task_definition.service : alltrue([
        for e in jsondecode(td.container_definitions)[0].environment :
        (e.name == "RELAY_POOL_SIZE" ? tonumber(e.value) >= 1 : true) && (e.name == "DB_POOL_SIZE" ? tonumber(e.value) >= 3 : true)
      ])
    ])
    error_message = "The default deployment gives every task at least 3 main connections and 1 for its relay."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : [
        for e in jsondecode(td.container_definitions)[0].environment : "${e.name}=${e.value}" if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ] == ["DB_MAX_OVERFLOW=0", "DB_POOL_SIZE=7", "RELAY_POOL_SIZE=2"]
    ])
    error_message = "On the default db.t4g.medium every task gets DB_POOL_SIZE=7, DB_MAX_OVERFLOW=0, RELAY_POOL_SIZE=2."
  }
}

run "t4g_micro_is_refused_for_the_default_deployment" {
  command = plan

  variables {
    database_instance_class = "db.t4g.micro" # (112 - 8) / 48 = 2 a task: one main connection, one relay
  }

  expect_failures = [aws_db_instance.main]
}

run "t4g_small_holds_every_task_at_its_peak" {
  command = plan

  variables {
    database_instance_class = "db.t4g.small"
  }

  assert {
    condition = anytrue([
      for p in aws_db_parameter_group.postgres[0].parameter : p.name == "max_connections" && p.value == tostring(var.expected_max_connections[var.database_instance_class])
    ])
    error_message = "The parameter group sets max_connections to the formula's figure of the class."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : toset([
        for e in jsondecode(td.container_definitions)[0].environment : e.name if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ]) == toset(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"])
    ])
    error_message = "Every task gets its three pool sizes."
  }
  assert {
    condition = var.expected_reserve + var.expected_peak_tasks / length(aws_ecs_task_definition.service) * sum([
      for td in aws_ecs_task_definition.service : sum([
        for e in jsondecode(td.container_definitions)[0].environment : tonumber(e.value) if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ])
    ]) <= var.expected_max_connections[var.database_instance_class]
    error_message = "The tasks' pools, at every task's peak, exceed the class's connection limit."
  }
}

run "t4g_medium_holds_every_task_at_its_peak" {
  command = plan

  variables {
    database_instance_class = "db.t4g.medium"
  }

  assert {
    condition = anytrue([
      for p in aws_db_parameter_group.postgres[0].parameter : p.name == "max_connections" && p.value == tostring(var.expected_max_connections[var.database_instance_class])
    ])
    error_message = "The parameter group sets max_connections to the formula's figure of the class."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : toset([
        for e in jsondecode(td.container_definitions)[0].environment : e.name if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ]) == toset(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"])
    ])
    error_message = "Every task gets its three pool sizes."
  }
  assert {
    condition = var.expected_reserve + var.expected_peak_tasks / length(aws_ecs_task_definition.service) * sum([
      for td in aws_ecs_task_definition.service : sum([
        for e in jsondecode(td.container_definitions)[0].environment : tonumber(e.value) if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ])
    ]) <= var.expected_max_connections[var.database_instance_class]
    error_message = "The tasks' pools, at every task's peak, exceed the class's connection limit."
  }
}

run "t4g_large_holds_every_task_at_its_peak" {
  command = plan

  variables {
    database_instance_class = "db.t4g.large"
  }

  assert {
    condition = anytrue([
      for p in aws_db_parameter_group.postgres[0].parameter : p.name == "max_connections" && p.value == tostring(var.expected_max_connections[var.database_instance_class])
    ])
    error_message = "The parameter group sets max_connections to the formula's figure of the class."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : toset([
        for e in jsondecode(td.container_definitions)[0].environment : e.name if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ]) == toset(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"])
    ])
    error_message = "Every task gets its three pool sizes."
  }
  assert {
    condition = var.expected_reserve + var.expected_peak_tasks / length(aws_ecs_task_definition.service) * sum([
      for td in aws_ecs_task_definition.service : sum([
        for e in jsondecode(td.container_definitions)[0].environment : tonumber(e.value) if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ])
    ]) <= var.expected_max_connections[var.database_instance_class]
    error_message = "The tasks' pools, at every task's peak, exceed the class's connection limit."
  }
}

run "t4g_xlarge_holds_every_task_at_its_peak" {
  command = plan

  variables {
    database_instance_class = "db.t4g.xlarge"
  }

  assert {
    condition = anytrue([
      for p in aws_db_parameter_group.postgres[0].parameter : p.name == "max_connections" && p.value == tostring(var.expected_max_connections[var.database_instance_class])
    ])
    error_message = "The parameter group sets max_connections to the formula's figure of the class."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : toset([
        for e in jsondecode(td.container_definitions)[0].environment : e.name if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ]) == toset(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"])
    ])
    error_message = "Every task gets its three pool sizes."
  }
  assert {
    condition = var.expected_reserve + var.expected_peak_tasks / length(aws_ecs_task_definition.service) * sum([
      for td in aws_ecs_task_definition.service : sum([
        for e in jsondecode(td.container_definitions)[0].environment : tonumber(e.value) if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ])
    ]) <= var.expected_max_connections[var.database_instance_class]
    error_message = "The tasks' pools, at every task's peak, exceed the class's connection limit."
  }
}

run "t4g_2xlarge_holds_every_task_at_its_peak" {
  command = plan

  variables {
    database_instance_class = "db.t4g.2xlarge"
  }

  assert {
    condition = anytrue([
      for p in aws_db_parameter_group.postgres[0].parameter : p.name == "max_connections" && p.value == tostring(var.expected_max_connections[var.database_instance_class])
    ])
    error_message = "The parameter group sets max_connections to the formula's figure of the class."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : toset([
        for e in jsondecode(td.container_definitions)[0].environment : e.name if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ]) == toset(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"])
    ])
    error_message = "Every task gets its three pool sizes."
  }
  assert {
    condition = var.expected_reserve + var.expected_peak_tasks / length(aws_ecs_task_definition.service) * sum([
      for td in aws_ecs_task_definition.service : sum([
        for e in jsondecode(td.container_definitions)[0].environment : tonumber(e.value) if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ])
    ]) <= var.expected_max_connections[var.database_instance_class]
    error_message = "The tasks' pools, at every task's peak, exceed the class's connection limit."
  }
}

run "m7g_large_holds_every_task_at_its_peak" {
  command = plan

  variables {
    database_instance_class = "db.m7g.large"
  }

  assert {
    condition = anytrue([
      for p in aws_db_parameter_group.postgres[0].parameter : p.name == "max_connections" && p.value == tostring(var.expected_max_connections[var.database_instance_class])
    ])
    error_message = "The parameter group sets max_connections to the formula's figure of the class."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : toset([
        for e in jsondecode(td.container_definitions)[0].environment : e.name if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ]) == toset(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"])
    ])
    error_message = "Every task gets its three pool sizes."
  }
  assert {
    condition = var.expected_reserve + var.expected_peak_tasks / length(aws_ecs_task_definition.service) * sum([
      for td in aws_ecs_task_definition.service : sum([
        for e in jsondecode(td.container_definitions)[0].environment : tonumber(e.value) if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ])
    ]) <= var.expected_max_connections[var.database_instance_class]
    error_message = "The tasks' pools, at every task's peak, exceed the class's connection limit."
  }
}

run "m7g_xlarge_holds_every_task_at_its_peak" {
  command = plan

  variables {
    database_instance_class = "db.m7g.xlarge"
  }

  assert {
    condition = anytrue([
      for p in aws_db_parameter_group.postgres[0].parameter : p.name == "max_connections" && p.value == tostring(var.expected_max_connections[var.database_instance_class])
    ])
    error_message = "The parameter group sets max_connections to the formula's figure of the class."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : toset([
        for e in jsondecode(td.container_definitions)[0].environment : e.name if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ]) == toset(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"])
    ])
    error_message = "Every task gets its three pool sizes."
  }
  assert {
    condition = var.expected_reserve + var.expected_peak_tasks / length(aws_ecs_task_definition.service) * sum([
      for td in aws_ecs_task_definition.service : sum([
        for e in jsondecode(td.container_definitions)[0].environment : tonumber(e.value) if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ])
    ]) <= var.expected_max_connections[var.database_instance_class]
    error_message = "The tasks' pools, at every task's peak, exceed the class's connection limit."
  }
}

run "m7g_2xlarge_holds_every_task_at_its_peak" {
  command = plan

  variables {
    database_instance_class = "db.m7g.2xlarge"
  }

  assert {
    condition = anytrue([
      for p in aws_db_parameter_group.postgres[0].parameter : p.name == "max_connections" && p.value == tostring(var.expected_max_connections[var.database_instance_class])
    ])
    error_message = "The parameter group sets max_connections to the formula's figure of the class."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : toset([
        for e in jsondecode(td.container_definitions)[0].environment : e.name if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ]) == toset(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"])
    ])
    error_message = "Every task gets its three pool sizes."
  }
  assert {
    condition = var.expected_reserve + var.expected_peak_tasks / length(aws_ecs_task_definition.service) * sum([
      for td in aws_ecs_task_definition.service : sum([
        for e in jsondecode(td.container_definitions)[0].environment : tonumber(e.value) if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ])
    ]) <= var.expected_max_connections[var.database_instance_class]
    error_message = "The tasks' pools, at every task's peak, exceed the class's connection limit."
  }
}

run "r7g_large_holds_every_task_at_its_peak" {
  command = plan

  variables {
    database_instance_class = "db.r7g.large"
  }

  assert {
    condition = anytrue([
      for p in aws_db_parameter_group.postgres[0].parameter : p.name == "max_connections" && p.value == tostring(var.expected_max_connections[var.database_instance_class])
    ])
    error_message = "The parameter group sets max_connections to the formula's figure of the class."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : toset([
        for e in jsondecode(td.container_definitions)[0].environment : e.name if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ]) == toset(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"])
    ])
    error_message = "Every task gets its three pool sizes."
  }
  assert {
    condition = var.expected_reserve + var.expected_peak_tasks / length(aws_ecs_task_definition.service) * sum([
      for td in aws_ecs_task_definition.service : sum([
        for e in jsondecode(td.container_definitions)[0].environment : tonumber(e.value) if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ])
    ]) <= var.expected_max_connections[var.database_instance_class]
    error_message = "The tasks' pools, at every task's peak, exceed the class's connection limit."
  }
}

run "r7g_xlarge_holds_every_task_at_its_peak" {
  command = plan

  variables {
    database_instance_class = "db.r7g.xlarge"
  }

  assert {
    condition = anytrue([
      for p in aws_db_parameter_group.postgres[0].parameter : p.name == "max_connections" && p.value == tostring(var.expected_max_connections[var.database_instance_class])
    ])
    error_message = "The parameter group sets max_connections to the formula's figure of the class."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : toset([
        for e in jsondecode(td.container_definitions)[0].environment : e.name if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ]) == toset(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"])
    ])
    error_message = "Every task gets its three pool sizes."
  }
  assert {
    condition = var.expected_reserve + var.expected_peak_tasks / length(aws_ecs_task_definition.service) * sum([
      for td in aws_ecs_task_definition.service : sum([
        for e in jsondecode(td.container_definitions)[0].environment : tonumber(e.value) if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ])
    ]) <= var.expected_max_connections[var.database_instance_class]
    error_message = "The tasks' pools, at every task's peak, exceed the class's connection limit."
  }
}

run "r7g_2xlarge_holds_every_task_at_its_peak" {
  command = plan

  variables {
    database_instance_class = "db.r7g.2xlarge"
  }

  assert {
    condition = anytrue([
      for p in aws_db_parameter_group.postgres[0].parameter : p.name == "max_connections" && p.value == tostring(var.expected_max_connections[var.database_instance_class])
    ])
    error_message = "The parameter group sets max_connections to the formula's figure of the class."
  }
  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : toset([
        for e in jsondecode(td.container_definitions)[0].environment : e.name if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ]) == toset(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"])
    ])
    error_message = "Every task gets its three pool sizes."
  }
  assert {
    condition = var.expected_reserve + var.expected_peak_tasks / length(aws_ecs_task_definition.service) * sum([
      for td in aws_ecs_task_definition.service : sum([
        for e in jsondecode(td.container_definitions)[0].environment : tonumber(e.value) if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ])
    ]) <= var.expected_max_connections[var.database_instance_class]
    error_message = "The tasks' pools, at every task's peak, exceed the class's connection limit."
  }
}

run "the_pools_are_derived_from_the_share_of_each_task" {
  command = plan

  variables {
    database_instance_class = "db.t4g.large" # (901 - 8) / 48 = 18 a task: relay 4, 10 kept, 4 overflow
  }

  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : [
        for e in jsondecode(td.container_definitions)[0].environment : "${e.name}=${e.value}" if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ] == ["DB_MAX_OVERFLOW=4", "DB_POOL_SIZE=10", "RELAY_POOL_SIZE=4"]
    ])
    error_message = "On db.t4g.large every task gets DB_POOL_SIZE=10, DB_MAX_OVERFLOW=4, RELAY_POOL_SIZE=4."
  }
}

run "the_smallest_class_that_gives_the_minimum_pool" {
  command = plan

  variables {
    database_instance_class = "db.t4g.small" # (225 - 8) / 48 = 4 a task
  }

  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.service : [
        for e in jsondecode(td.container_definitions)[0].environment : "${e.name}=${e.value}" if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ] == ["DB_MAX_OVERFLOW=0", "DB_POOL_SIZE=3", "RELAY_POOL_SIZE=1"]
    ])
    error_message = "On db.t4g.small every task gets the minimum: three main connections and one for its relay."
  }
}

run "pools_set_below_the_minimum_by_hand_are_refused" {
  command = plan

  variables {
    service_settings = { orchestrator = { db_pool_size = 1, db_max_overflow = 1 } }
  }

  expect_failures = [aws_db_instance.main]
}

run "an_instance_per_service_shares_it_among_that_service_alone" {
  command = plan

  variables {
    database_instance_class       = "db.t4g.micro"
    database_instance_per_service = true
    database_deletion_protection  = false
    service_settings              = { orchestrator = { max_tasks = 6 } }
  }

  assert {
    # (112 - 8) / 8 = 13: relay 3, 10 kept; the orchestrator's (112 - 8) / 12 = 8: relay 2, 6 kept.
    condition = [
      for e in jsondecode(aws_ecs_task_definition.service["payment_svc"].container_definitions)[0].environment : "${e.name}=${e.value}" if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
      ] == ["DB_MAX_OVERFLOW=0", "DB_POOL_SIZE=10", "RELAY_POOL_SIZE=3"] && [
      for e in jsondecode(aws_ecs_task_definition.service["orchestrator"].container_definitions)[0].environment : "${e.name}=${e.value}" if contains(["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE"], e.name)
    ] == ["DB_MAX_OVERFLOW=0", "DB_POOL_SIZE=6", "RELAY_POOL_SIZE=2"]
    error_message = "With an instance per service each service's tasks share its own instance's connections."
  }
}

# --- refused ----------------------------------------------------------------------------------

run "more_tasks_than_the_database_can_connect_are_refused" {
  command = plan

  variables {
    database_instance_class = "db.t4g.micro"
    # 6 x 8 x 2 = 96 tasks of at least 2 connections each: 192 + 8 > 112.
    service_settings = {
      for svc in ["order_svc", "orchestrator", "inventory_svc", "payment_svc", "fulfillment_svc", "notification_svc"] : svc => { max_tasks = 8 }
    }
  }

  expect_failures = [aws_db_instance.main]
}

run "one_service_scaled_out_alone_is_refused_too" {
  command = plan

  variables {
    database_instance_class = "db.t4g.medium"
    service_settings        = { payment_svc = { max_tasks = 200 } }
  }

  expect_failures = [aws_db_instance.main]
}

run "pools_set_too_large_by_hand_are_refused" {
  command = plan

  variables {
    database_instance_class = "db.t4g.medium"
    # 8 tasks x (50 + 0 + 2) + 40 x 9 + 8 = 784 > 450
    service_settings = { order_svc = { db_pool_size = 50 } }
  }

  expect_failures = [aws_db_instance.main]
}

run "an_instance_per_service_is_checked_on_its_own" {
  command = plan

  variables {
    database_instance_class       = "db.t4g.micro"
    database_instance_per_service = true
    database_deletion_protection  = false
    # 120 tasks of at least 2 connections on payment_svc's own db.t4g.micro
    service_settings = { payment_svc = { max_tasks = 60 } }
  }

  expect_failures = [aws_db_instance.main]
}

run "a_class_without_a_known_limit_is_refused" {
  command = plan

  variables {
    database_instance_class = "db.t3.nano"
  }

  expect_failures = [var.database_instance_class]
}

run "pool_sizes_cannot_bypass_the_budget_through_service_environment" {
  command = plan

  variables {
    service_environment = { DB_POOL_SIZE = "40" }
  }

  expect_failures = [var.service_environment]
}

run "pool_sizes_the_services_would_refuse_are_refused_at_plan" {
  command = plan

  variables {
    service_settings = { payment_svc = { relay_pool_size = 0 } }
  }

  expect_failures = [var.service_settings]
}
