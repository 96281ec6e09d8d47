# Mirrors messaging.topology.TOPICS.
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

resource "aws_sns_topic" "topic" {
  for_each = local.topics

  name = local.physical[each.key]
}

resource "aws_sns_topic_subscription" "queue" {
  for_each = local.subscriptions

  topic_arn            = aws_sns_topic.topic[each.value.topic].arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.queue[each.value.queue].arn
  raw_message_delivery = true

  # Let the topic send to the queue before it starts delivering.
  depends_on = [aws_sqs_queue_policy.from_topics]
}

resource "aws_sqs_queue_policy" "from_topics" {
  for_each = local.subscribed_queues

  queue_url = aws_sqs_queue.queue[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AllowSubscribedTopics"
      Effect    = "Allow"
      Principal = { Service = "sns.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.queue[each.key].arn
      Condition = {
        ArnEquals = { "aws:SourceArn" = [for t in each.value : aws_sns_topic.topic[t].arn] }
      }
    }]
  })
}
