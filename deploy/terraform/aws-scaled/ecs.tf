# NOVA on ECS: the API as Fargate tasks behind the ALB, the workers as EC2-backed tasks.
#
# Why the workers are not on Fargate: NOVA's sandbox (code.run jobs, the AI path's programs) builds a jail
# with new user, pid, mount and network namespaces, its own /proc and tmpfs mounts, and cgroup limits.
# Fargate gives no privileged containers, no CAP_SYS_ADMIN and no user namespaces, so a worker there would
# answer every sandbox run with sandbox_error. The worker hosts are an Auto Scaling group of ECS-optimized
# Amazon Linux 2023 instances behind an ECS capacity provider, and the worker container runs privileged; the
# jail drops every capability, sets no_new_privs and installs its seccomp filter before any program runs.
#
# The API tasks need none of that: they run with no privileges, and without a sandbox `POST /v1/executions`
# answers 503 sandbox_unavailable (code runs as `code.run` jobs on the workers instead).

locals {
  api_port     = 8080
  metrics_port = 9090

  # Settings shared by the API and the workers (the non-secret part of NOVA's configuration).
  common_environment = [
    { name = "NOVA_DATA_DIR", value = "/var/lib/nova" },
    { name = "NOVA_BLOB_URL", value = "s3://${aws_s3_bucket.documents.bucket}/documents" },
    { name = "AWS_REGION", value = var.region },
    { name = "NOVA_LOG_FORMAT", value = "json" },
    { name = "NOVA_RETENTION_DAYS", value = tostring(var.job_retention_days) },
    # Every process runs the housekeeping (and the webhook dispatcher), so all of them get the same ages.
    { name = "NOVA_DOCUMENT_RETENTION_DAYS", value = tostring(var.documents_expiration_days) },
    { name = "NOVA_SHUTDOWN_GRACE", value = "30" },
    { name = "NOVA_LLM_BASE_URL", value = var.llm_base_url },
    { name = "NOVA_LLM_MODEL", value = var.llm_model },
  ]

  common_secrets = [
    { name = "NOVA_DATABASE_URL", valueFrom = aws_secretsmanager_secret.database_url.arn },
    { name = "NOVA_LLM_API_KEY", valueFrom = aws_secretsmanager_secret.llm_api_key.arn },
  ]

  # cgroup v2 hosts: a cgroup that holds processes cannot hand the memory, pids and cpu controllers to its
  # children, so the worker first leaves its container's root cgroup; NOVA then creates its jails' cgroups
  # there. On cgroup v1 hosts the file does not exist and nothing moves.
  worker_start = <<-EOT
    if [ -w /sys/fs/cgroup/cgroup.subtree_control ]; then
      mkdir -p /sys/fs/cgroup/nova-supervisor
      echo $$ > /sys/fs/cgroup/nova-supervisor/cgroup.procs
    fi
    exec nova worker "$@"
  EOT

  # The CloudWatch agent beside each NOVA container scrapes its /metrics over the task's loopback (which NOVA
  # serves without a key) and writes the chosen series to CloudWatch as embedded-metric-format logs. Each
  # series is a custom metric ($0.30/month): only what the alarms use is declared; add declarations (e.g.
  # nova_queue_jobs by workflow and state) for dashboards.
  cloudwatch_agent_config = jsonencode({
    logs = {
      metrics_collected = {
        prometheus = {
          log_group_name         = aws_cloudwatch_log_group.metrics.name
          prometheus_config_path = "env:PROMETHEUS_CONFIG_CONTENT"
          emf_processor = {
            metric_namespace = "NOVA"
            metric_declaration = [
              {
                # The oldest ready job: one series per workflow, and their maximum under {job} alone.
                source_labels    = ["job"]
                label_matcher    = "^nova-api$"
                dimensions       = [["job"], ["job", "workflow"]]
                metric_selectors = ["^nova_queue_oldest_ready_age_seconds$"]
              },
              {
                source_labels    = ["outcome"]
                label_matcher    = "^sandbox_error$"
                dimensions       = [["job"]]
                metric_selectors = ["^nova_sandbox_runs_total$"]
              },
            ]
          }
        }
      }
      force_flush_interval = 15
    }
  })

  prometheus_config = {
    api = yamlencode({
      global         = { scrape_interval = "60s", scrape_timeout = "10s" }
      scrape_configs = [{ job_name = "nova-api", static_configs = [{ targets = ["localhost:${local.api_port}"] }] }]
    })
    worker = yamlencode({
      global         = { scrape_interval = "60s", scrape_timeout = "10s" }
      scrape_configs = [{ job_name = "nova-worker", static_configs = [{ targets = ["localhost:${local.metrics_port}"] }] }]
    })
  }

  cloudwatch_agent = {
    for role in ["api", "worker"] : role => {
      name                   = "cloudwatch-agent"
      image                  = var.cloudwatch_agent_image
      essential              = false
      cpu                    = 64
      memory                 = 128
      readonlyRootFilesystem = false
      environment = [
        { name = "CW_CONFIG_CONTENT", value = local.cloudwatch_agent_config },
        { name = "PROMETHEUS_CONFIG_CONTENT", value = local.prometheus_config[role] },
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.cloudwatch_agent.name
          awslogs-region        = var.region
          awslogs-stream-prefix = role
        }
      }
    }
  }
}

resource "aws_ecs_cluster" "main" {
  name = var.name

  #checkov:skip=CKV_AWS_65:Container Insights follows var.enable_container_insights (off by default: ~$10/month of metrics for this cluster); the alarms use the basic AWS/ECS metrics.
  setting {
    name  = "containerInsights"
    value = var.enable_container_insights ? "enabled" : "disabled"
  }

  configuration {
    execute_command_configuration {
      kms_key_id = aws_kms_key.main.arn
      logging    = "OVERRIDE"
      log_configuration {
        cloud_watch_encryption_enabled = true
        cloud_watch_log_group_name     = aws_cloudwatch_log_group.exec.name
      }
    }
  }
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE", aws_ecs_capacity_provider.workers.name]
}

# ---------------------------------------------------------------------------------------------------------------
# API: `nova serve --workers 0` on Fargate
# ---------------------------------------------------------------------------------------------------------------

resource "aws_ecs_task_definition" "api" {
  #checkov:skip=CKV_AWS_336:NOVA's container has a read-only root file system; the CloudWatch agent sidecar writes its translated configuration under /opt/aws and cannot.
  family                   = "${var.name}-api"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.api_cpu
  memory                   = var.api_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.api_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "data"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode(concat([
    {
      name       = "nova"
      image      = var.container_image
      essential  = true
      entryPoint = ["nova"]
      command    = ["serve", "--workers", "0"]
      # The image's own user: Fargate's task volumes are owned by root, so a uid chosen here could not
      # write NOVA_DATA_DIR or /tmp. No capabilities beyond Docker's defaults, no privilege.
      readonlyRootFilesystem = true
      linuxParameters        = { capabilities = { drop = ["NET_RAW"] } }
      portMappings           = [{ containerPort = local.api_port, protocol = "tcp" }]
      environment = concat(local.common_environment, [
        { name = "NOVA_LISTEN", value = "0.0.0.0:${local.api_port}" },
        { name = "NOVA_SANDBOX_POOL", value = "0" },
        { name = "NOVA_RATE_LIMIT", value = var.rate_limit },
      ])
      secrets = concat(local.common_secrets, [
        { name = "NOVA_API_KEY", valueFrom = aws_secretsmanager_secret.api_key.arn },
        # rediss://:AUTH_TOKEN@HOST:6379: TLS, and the token ElastiCache asks for.
        { name = "NOVA_REDIS_URL", valueFrom = aws_secretsmanager_secret.redis_url.arn },
      ])
      mountPoints = [
        { sourceVolume = "data", containerPath = "/var/lib/nova", readOnly = false },
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]
      stopTimeout = 40
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.api.name
          awslogs-region        = var.region
          awslogs-stream-prefix = "api"
        }
      }
    }],
    var.enable_queue_metrics ? [local.cloudwatch_agent.api] : []
  ))
}

resource "aws_ecs_service" "api" {
  name                   = "${var.name}-api"
  cluster                = aws_ecs_cluster.main.id
  task_definition        = aws_ecs_task_definition.api.arn
  desired_count          = var.api_desired_count
  launch_type            = "FARGATE"
  platform_version       = "LATEST"
  enable_execute_command = true
  propagate_tags         = "SERVICE"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 30

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.api.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = "nova"
    container_port   = local.api_port
  }

  lifecycle {
    ignore_changes = [desired_count]
  }

  # Tasks start once their secrets have values.
  depends_on = [
    aws_lb_listener.https,
    aws_secretsmanager_secret_version.api_key,
    aws_secretsmanager_secret_version.database_url,
    aws_secretsmanager_secret_version.redis_url,
  ]
}

resource "aws_appautoscaling_target" "api" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.api.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.api_desired_count
  max_capacity       = var.api_max_count
}

resource "aws_appautoscaling_policy" "api_cpu" {
  name               = "${var.name}-api-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.api.service_namespace
  resource_id        = aws_appautoscaling_target.api.resource_id
  scalable_dimension = aws_appautoscaling_target.api.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = 70
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

# ---------------------------------------------------------------------------------------------------------------
# Workers: `nova worker` on EC2 hosts, one privileged task per host
# ---------------------------------------------------------------------------------------------------------------

data "aws_ssm_parameter" "ecs_ami" {
  name = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
}

resource "aws_launch_template" "worker" {
  name_prefix   = "${var.name}-worker-"
  image_id      = data.aws_ssm_parameter.ecs_ami.value
  instance_type = var.worker_instance_type
  ebs_optimized = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.worker_host.arn
  }

  vpc_security_group_ids = [aws_security_group.worker.id]

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  monitoring {
    enabled = true
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = var.worker_root_volume_gb
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = aws_kms_key.main.arn
      delete_on_termination = true
    }
  }

  # Task roles for host-network tasks need ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST.
  user_data = base64encode(<<-EOT
    #!/bin/bash
    cat >> /etc/ecs/ecs.config <<CONFIG
    ECS_CLUSTER=${var.name}
    ECS_ENABLE_TASK_IAM_ROLE=true
    ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true
    ECS_CONTAINER_STOP_TIMEOUT=60s
    CONFIG
  EOT
  )

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-worker" }
  }
}

resource "aws_autoscaling_group" "workers" {
  name_prefix           = "${var.name}-worker-"
  min_size              = var.worker_min_size
  max_size              = var.worker_max_size
  vpc_zone_identifier   = aws_subnet.private[*].id
  protect_from_scale_in = true
  health_check_type     = "EC2"

  launch_template {
    id      = aws_launch_template.worker.id
    version = "$Latest"
  }

  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 50
    }
  }

  tag {
    key                 = "AmazonECSManaged"
    value               = "true"
    propagate_at_launch = true
  }

  lifecycle {
    ignore_changes = [desired_capacity]
  }
}

resource "aws_ecs_capacity_provider" "workers" {
  name = "${var.name}-workers"

  auto_scaling_group_provider {
    auto_scaling_group_arn         = aws_autoscaling_group.workers.arn
    managed_termination_protection = "ENABLED"
    managed_draining               = "ENABLED"

    managed_scaling {
      status                    = "ENABLED"
      target_capacity           = 100
      minimum_scaling_step_size = 1
      maximum_scaling_step_size = 2
    }
  }
}

resource "aws_ecs_task_definition" "worker" {
  #checkov:skip=CKV_AWS_334:NOVA's sandbox builds user, pid, mount and network namespaces and cgroups for each jail, which needs a privileged container; the jail drops every capability, sets no_new_privs and a seccomp filter before it runs any program.
  #checkov:skip=CKV_AWS_336:NOVA's container has a read-only root file system; the CloudWatch agent sidecar writes its translated configuration under /opt/aws and cannot.
  family                   = "${var.name}-worker"
  requires_compatibilities = ["EC2"]
  network_mode             = "host"
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.worker_task.arn

  volume {
    name = "data"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode(concat([
    {
      name                   = "nova"
      image                  = var.container_image
      essential              = true
      privileged             = true
      user                   = "0"
      readonlyRootFilesystem = true
      # Most of a t3.large's 8 GiB; the rest is for the host, the ECS agent and the CloudWatch agent.
      memoryReservation = 6144
      entryPoint        = ["/bin/sh", "-c"]
      command           = [local.worker_start, "nova-worker", "--metrics-listen", "0.0.0.0:${local.metrics_port}"]
      environment = concat(local.common_environment, [
        { name = "NOVA_SANDBOX_POOL", value = "2" },
      ], var.worker_concurrency > 0 ? [{ name = "NOVA_WORKERS", value = tostring(var.worker_concurrency) }] : [])
      secrets = local.common_secrets
      mountPoints = [
        { sourceVolume = "data", containerPath = "/var/lib/nova", readOnly = false },
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]
      stopTimeout = 60
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.worker.name
          awslogs-region        = var.region
          awslogs-stream-prefix = "worker"
        }
      }
    }],
    var.enable_queue_metrics ? [local.cloudwatch_agent.worker] : []
  ))
}

resource "aws_ecs_service" "worker" {
  name                   = "${var.name}-worker"
  cluster                = aws_ecs_cluster.main.id
  task_definition        = aws_ecs_task_definition.worker.arn
  desired_count          = var.worker_desired_count
  enable_execute_command = true
  propagate_tags         = "SERVICE"

  # A worker holds port 9090 of its host: one per host, and a rolling update stops one before starting one.
  deployment_minimum_healthy_percent = 50
  deployment_maximum_percent         = 100

  capacity_provider_strategy {
    capacity_provider = aws_ecs_capacity_provider.workers.name
    weight            = 1
  }

  placement_constraints {
    type = "distinctInstance"
  }

  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_ecs_cluster_capacity_providers.main, aws_secretsmanager_secret_version.database_url]
}

resource "aws_appautoscaling_target" "worker" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.worker.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.worker_desired_count
  max_capacity       = var.worker_max_size
}

resource "aws_appautoscaling_policy" "worker_cpu" {
  name               = "${var.name}-worker-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  resource_id        = aws_appautoscaling_target.worker.resource_id
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = 70
    scale_in_cooldown  = 600
    scale_out_cooldown = 120
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}
