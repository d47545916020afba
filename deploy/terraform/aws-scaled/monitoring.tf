# Logs and alarms. NOVA logs one JSON object a line (NOVA_LOG_FORMAT=json) to CloudWatch Logs; alarms go to
# an SNS topic.

resource "aws_cloudwatch_log_group" "api" {
  name = "/${var.name}/api"
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (30 days by default, for cost); raise it to 365 where policy asks for a year.
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_cloudwatch_log_group" "worker" {
  name = "/${var.name}/worker"
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (30 days by default, for cost); raise it to 365 where policy asks for a year.
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

# The embedded-metric-format records the CloudWatch agents write (they become the NOVA/* metrics).
resource "aws_cloudwatch_log_group" "metrics" {
  name = "/${var.name}/prometheus-metrics"
  #checkov:skip=CKV_AWS_338:Embedded-metric records only: the metrics they carry are kept by CloudWatch Metrics for 15 months.
  retention_in_days = 3
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_cloudwatch_log_group" "cloudwatch_agent" {
  name = "/${var.name}/cloudwatch-agent"
  #checkov:skip=CKV_AWS_338:The CloudWatch agent's own diagnostics; a week is enough.
  retention_in_days = 7
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_cloudwatch_log_group" "exec" {
  name = "/${var.name}/ecs-exec"
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (30 days by default, for cost); raise it to 365 where policy asks for a year.
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_cloudwatch_log_group" "redis" {
  name = "/${var.name}/redis"
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (30 days by default, for cost); raise it to 365 where policy asks for a year.
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.main.id
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

locals {
  alarm_actions = [aws_sns_topic.alarms.arn]
  alb_dimension = { LoadBalancer = aws_lb.api.arn_suffix }
}

# Share of requests that got a 5xx, from NOVA (target) or from the ALB itself (no healthy target).
resource "aws_cloudwatch_metric_alarm" "api_5xx_ratio" {
  alarm_name          = "${var.name}-api-5xx-ratio"
  alarm_description   = "More than ${var.alarm_5xx_ratio * 100}% of API requests answered 5xx over 5 minutes."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_5xx_ratio
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "ratio"
    expression  = "IF(requests > 0, (FILL(target5xx, 0) + FILL(elb5xx, 0)) / requests, 0)"
    label       = "5xx ratio"
    return_data = true
  }

  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = local.alb_dimension
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "target5xx"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = local.alb_dimension
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "elb5xx"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = local.alb_dimension
      period      = 60
      stat        = "Sum"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "api_p99_latency" {
  alarm_name          = "${var.name}-api-p99-latency"
  alarm_description   = "The ALB's p99 time to NOVA's response is above ${var.alarm_p99_latency_seconds} s for 10 minutes (uploads and event streams included)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  dimensions          = local.alb_dimension
  extended_statistic  = "p99"
  period              = 300
  evaluation_periods  = 2
  threshold           = var.alarm_p99_latency_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "api_unhealthy" {
  alarm_name          = "${var.name}-api-no-healthy-target"
  alarm_description   = "No API task passes /readyz (database or blob store unreachable, or no task running)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  dimensions          = { LoadBalancer = aws_lb.api.arn_suffix, TargetGroup = aws_lb_target_group.api.arn_suffix }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 3
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "service_cpu" {
  for_each = {
    api    = aws_ecs_service.api.name
    worker = aws_ecs_service.worker.name
  }

  alarm_name          = "${var.name}-${each.key}-cpu"
  alarm_description   = "The ${each.key} service's average CPU is above ${var.alarm_cpu_percent}% for 15 minutes (autoscaling at its maximum?)."
  namespace           = "AWS/ECS"
  metric_name         = "CPUUtilization"
  dimensions          = { ClusterName = aws_ecs_cluster.main.name, ServiceName = each.value }
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 3
  threshold           = var.alarm_cpu_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "db_cpu" {
  alarm_name          = "${var.name}-db-cpu"
  alarm_description   = "The database's CPU is above ${var.alarm_cpu_percent}% for 15 minutes."
  namespace           = "AWS/RDS"
  metric_name         = "CPUUtilization"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.main.identifier }
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 3
  threshold           = var.alarm_cpu_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "db_storage" {
  alarm_name          = "${var.name}-db-free-storage"
  alarm_description   = "The database has less than ${var.alarm_db_free_storage_gb} GiB free (storage autoscaling at its ceiling?)."
  namespace           = "AWS/RDS"
  metric_name         = "FreeStorageSpace"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.main.identifier }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.alarm_db_free_storage_gb * 1024 * 1024 * 1024
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# From NOVA's own metrics, through the CloudWatch agent sidecars (var.enable_queue_metrics).

resource "aws_cloudwatch_metric_alarm" "queue_age" {
  count = var.enable_queue_metrics ? 1 : 0

  alarm_name          = "${var.name}-queue-oldest-ready-job"
  alarm_description   = "A ready job has waited more than ${var.alarm_queue_age_seconds} s for a worker (workers down, too few, or stuck). nova_queue_oldest_ready_age_seconds, maximum over workflows."
  namespace           = "NOVA"
  metric_name         = "nova_queue_oldest_ready_age_seconds"
  dimensions          = { job = "nova-api" }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = var.alarm_queue_age_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "missing"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "sandbox_errors" {
  count = var.enable_queue_metrics ? 1 : 0

  alarm_name          = "${var.name}-sandbox-errors"
  alarm_description   = "Sandbox runs ended in sandbox_error (the host could not build a jail: check the worker log for the failed step)."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "errors"
    expression  = "FILL(api, 0) + FILL(worker, 0)"
    label       = "sandbox_error runs"
    return_data = true
  }

  metric_query {
    id = "api"
    metric {
      namespace   = "NOVA"
      metric_name = "nova_sandbox_runs_total"
      dimensions  = { job = "nova-api" }
      period      = 300
      stat        = "Sum"
    }
  }

  metric_query {
    id = "worker"
    metric {
      namespace   = "NOVA"
      metric_name = "nova_sandbox_runs_total"
      dimensions  = { job = "nova-worker" }
      period      = 300
      stat        = "Sum"
    }
  }
}
