output "sns_topic_arn" {
  description = "The region's alarm topic (subscribe the on-call to it)."
  value       = aws_sns_topic.alarms.arn
}

output "stop_condition_alarm_arns" {
  description = "Alarms that stop a chaos experiment in this region: participants see server errors, or the ALB has no healthy target."
  value       = [aws_cloudwatch_metric_alarm.api_5xx.arn, aws_cloudwatch_metric_alarm.api_no_healthy_target.arn]
}
