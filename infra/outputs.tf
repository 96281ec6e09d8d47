output "queue_urls" {
  description = "Queue URL by logical name (messaging.topology.QUEUES)."
  value       = { for name, q in aws_sqs_queue.queue : name => q.url }
}

output "dead_letter_queue_urls" {
  description = "Dead-letter queue URL by logical name (messaging.topology.DEAD_LETTER_QUEUES)."
  value       = { for name, q in local.dead_letter_queues : name => q.url }
}

output "topic_arns" {
  description = "Topic ARN by logical name (messaging.topology.TOPICS)."
  value       = { for name, t in aws_sns_topic.topic : name => t.arn }
}

output "alarm_names" {
  description = "Names of the CloudWatch alarms on dead-letter queues and queue backlogs."
  value = concat(
    [for a in aws_cloudwatch_metric_alarm.dead_letters : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.backlog : a.alarm_name],
  )
}
