# The six processes and the messaging each one really uses (read from each service's
# main.py and handlers; participants reply to the queue named in Envelope.reply_to, which
# is always orchestrator-replies). The alarms, the task roles and the ECS services are
# all built from this one table; tests/infra checks it against the Python packages.
locals {
  command_queues = ["order-commands", "inventory-commands", "payment-commands", "fulfillment-commands", "notification-commands"]

  services = {
    order_svc = {
      env_prefix = "ORDER_"
      consumes   = ["order-commands"]
      sends_to   = ["orchestrator-commands", "orchestrator-replies"]
      publishes  = ["order-events"]
    }
    orchestrator = {
      env_prefix = "ORCHESTRATOR_"
      consumes   = ["orchestrator-commands", "orchestrator-replies"]
      # Every command queue, the escalations, and (to redrive a dead-letter queue) every
      # queue that has one, its own two included.
      sends_to  = distinct(concat(local.command_queues, ["saga-escalations"], keys(local.redriven_queues)))
      publishes = []
    }
    inventory_svc = {
      env_prefix = "INVENTORY_"
      consumes   = ["inventory-commands"]
      sends_to   = ["orchestrator-replies"]
      publishes  = []
    }
    payment_svc = {
      env_prefix = "PAYMENT_"
      consumes   = ["payment-commands"]
      sends_to   = ["orchestrator-replies"]
      publishes  = []
    }
    fulfillment_svc = {
      env_prefix = "FULFILLMENT_"
      consumes   = ["fulfillment-commands"]
      sends_to   = ["orchestrator-replies"]
      publishes  = []
    }
    notification_svc = {
      env_prefix = "NOTIFICATION_"
      consumes   = ["notification-commands"]
      sends_to   = ["orchestrator-replies"]
      publishes  = ["customer-push"]
    }
  }

  # Role ARNs formatted from their names, so that policies naming them are known at plan.
  task_role_arns = {
    for svc in keys(local.services) : svc => "arn:${local.partition}:iam::${local.account_id}:role/${local.task_role_names[svc]}"
  }
  task_role_names = {
    for svc in keys(local.services) : svc => join("-", compact([var.name_prefix, replace(svc, "_", "-"), "task"]))
  }
}
