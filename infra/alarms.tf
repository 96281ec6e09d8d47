# Anything in a dead-letter queue needs a person.
resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each = local.dead_letter_queues

  alarm_name        = "${each.value.name}-not-empty"
  alarm_description = "Messages in dead-letter queue ${each.value.name}."
  namespace         = "AWS/SQS"
  metric_name       = "ApproximateNumberOfMessagesVisible"
  dimensions        = { QueueName = each.value.name }

  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = var.alarm_actions
  ok_actions    = var.alarm_actions
}

# A consumer that stopped (or cannot keep up) shows as old messages in its queue.
resource "aws_cloudwatch_metric_alarm" "backlog" {
  for_each = local.redriven_queues # the command and reply queues

  alarm_name        = "${aws_sqs_queue.queue[each.key].name}-backlog"
  alarm_description = "Oldest message in ${aws_sqs_queue.queue[each.key].name} is older than 5 minutes."
  namespace         = "AWS/SQS"
  metric_name       = "ApproximateAgeOfOldestMessage"
  dimensions        = { QueueName = aws_sqs_queue.queue[each.key].name }

  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 300
  treat_missing_data  = "notBreaching"

  alarm_actions = var.alarm_actions
  ok_actions    = var.alarm_actions
}
