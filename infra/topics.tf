# Mirrors contracts.topology.TOPICS.
locals {
  topics = {
    "order-events"  = { subscribers = [] }
    "customer-push" = { subscribers = [] }
  }

  # To fan a topic out to queues, list the queues' logical names (keys of local.queues)
  # in its `subscribers` (as Topic.subscribers in topology.py); the subscription and the
  # queue policy letting the topic send to the queue follow from that.
  subscriptions = merge([
    for topic, t in local.topics : {
      for queue in t.subscribers : "${topic}/${queue}" => { topic = topic, queue = queue }
    }
  ]...)

  subscribed_queues = {
    for queue in distinct([for s in values(local.subscriptions) : s.queue]) :
    queue => [for s in values(local.subscriptions) : s.topic if s.queue == queue]
  }
}

locals {
  topic_kms_key = var.topic_kms_key_arn == "" ? null : var.topic_kms_key_arn

  # Who publishes to each topic (services.tf). With the services on AWS only their task
  # roles may publish; otherwise anything in the account may.
  topic_publishers = {
    for topic in keys(local.topics) : topic => [for svc, s in local.services : svc if contains(s.publishes, topic)]
  }
}

resource "aws_sns_topic" "topic" {
  for_each = local.topics

  name              = local.physical[each.key]
  kms_master_key_id = local.topic_kms_key
}

resource "aws_sns_topic_policy" "topic" {
  for_each = local.topics

  arn = aws_sns_topic.topic[each.key].arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [{
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "sns:Publish"
        Resource  = "${local.sns_arn_prefix}:${local.physical[each.key]}"
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      }],
      [for statement in [
        {
          Sid       = "AllowPublishers"
          Effect    = "Allow"
          Principal = { AWS = [for svc in local.topic_publishers[each.key] : local.task_role_arns[svc]] }
          Action    = "sns:Publish"
          Resource  = "${local.sns_arn_prefix}:${local.physical[each.key]}"
        },
        {
          Sid       = "DenyOtherPublishers"
          Effect    = "Deny"
          Principal = "*"
          Action    = "sns:Publish"
          Resource  = "${local.sns_arn_prefix}:${local.physical[each.key]}"
          Condition = { ArnNotEquals = { "aws:PrincipalArn" = [for svc in local.topic_publishers[each.key] : local.task_role_arns[svc]] } }
        },
      ] : statement if var.deploy_services],
      [for statement in [{
        Sid       = "AllowAccountToPublish"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "sns:Publish"
        Resource  = "${local.sns_arn_prefix}:${local.physical[each.key]}"
      }] : statement if !var.deploy_services],
    )
  })

  # The policy names the task roles, which must exist before SNS accepts it.
  depends_on = [aws_iam_role.task]
}

resource "aws_sns_topic_subscription" "queue" {
  for_each = local.subscriptions

  topic_arn            = aws_sns_topic.topic[each.value.topic].arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.queue[each.value.queue].arn
  raw_message_delivery = true

  # Let the topic send to the queue before it starts delivering.
  depends_on = [aws_sqs_queue_policy.queue]
}
