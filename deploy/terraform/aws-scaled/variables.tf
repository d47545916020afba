# ---------------------------------------------------------------------------------------------------------------
# General
# ---------------------------------------------------------------------------------------------------------------

variable "region" {
  description = "AWS region to deploy NOVA into."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name prefix of every resource (lowercase letters, digits and hyphens)."
  type        = string
  default     = "nova"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2 to 21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags put on every resource."
  type        = map(string)
  default     = {}
}

variable "container_image" {
  description = "The NOVA container image (Debian slim runtime with tesseract, poppler and python3), e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/nova:0.1.0."
  type        = string
}

# ---------------------------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Availability zones (of var.region) to spread subnets over: 2 or 3. The ALB, RDS and ElastiCache need at least 2."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 3
    error_message = "Give 2 or 3 availability zones."
  }
}

variable "nat_gateway_per_az" {
  description = "One NAT gateway per availability zone (survives the loss of a zone, costs ~$33/month each) instead of one shared NAT gateway."
  type        = bool
  default     = false
}

variable "flow_log_retention_days" {
  description = "Days the VPC flow logs are kept in CloudWatch Logs."
  type        = number
  default     = 14
}

# ---------------------------------------------------------------------------------------------------------------
# API (ECS Fargate behind an ALB)
# ---------------------------------------------------------------------------------------------------------------

variable "certificate_arn" {
  description = "ARN of the ACM certificate for the ALB's HTTPS listener (issued for the API's host name)."
  type        = string
}

variable "alb_ingress_cidrs" {
  description = "CIDR blocks allowed to reach the ALB's HTTPS listener (there is no plain-HTTP listener)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "alb_deletion_protection" {
  description = "Protect the ALB against deletion."
  type        = bool
  default     = true
}

variable "api_cpu" {
  description = "Fargate CPU units of one API task (1024 = 1 vCPU), the CloudWatch agent sidecar included."
  type        = number
  default     = 512
}

variable "api_memory" {
  description = "Fargate memory (MiB) of one API task, the CloudWatch agent sidecar included."
  type        = number
  default     = 1024
}

variable "api_desired_count" {
  description = "API tasks to run (the autoscaling minimum)."
  type        = number
  default     = 2
}

variable "api_max_count" {
  description = "Most API tasks that CPU autoscaling may run."
  type        = number
  default     = 6
}

variable "rate_limit" {
  description = "NOVA_RATE_LIMIT: requests per API key (N/s, N/min or N/h with ,burst=M), counted in Redis across API tasks."
  type        = string
  default     = "50/s,burst=100"
}

# ---------------------------------------------------------------------------------------------------------------
# Workers (EC2, because the sandbox needs user namespaces, which Fargate does not give)
# ---------------------------------------------------------------------------------------------------------------

variable "worker_instance_type" {
  description = "EC2 instance type of the worker hosts (one `nova worker` task per host)."
  type        = string
  default     = "t3.large"
}

variable "worker_min_size" {
  description = "Fewest worker hosts."
  type        = number
  default     = 1
}

variable "worker_max_size" {
  description = "Most worker hosts."
  type        = number
  default     = 4
}

variable "worker_desired_count" {
  description = "Worker tasks to run (the autoscaling minimum); the capacity provider adds hosts to fit them."
  type        = number
  default     = 1
}

variable "worker_root_volume_gb" {
  description = "Root EBS volume of a worker host, in GiB (image, jails' scratch space)."
  type        = number
  default     = 40
}

variable "worker_concurrency" {
  description = "NOVA_WORKERS of a worker: jobs of each workflow one worker runs at once (0: the number of cores)."
  type        = number
  default     = 0
}

# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS PostgreSQL instance class."
  type        = string
  default     = "db.t4g.small"
}

variable "db_engine_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "16"
}

variable "db_allocated_storage_gb" {
  description = "Initial RDS storage in GiB (gp3)."
  type        = number
  default     = 20
}

variable "db_max_allocated_storage_gb" {
  description = "Ceiling of RDS storage autoscaling in GiB."
  type        = number
  default     = 100
}

variable "db_multi_az" {
  description = "Run RDS with a synchronous standby in another zone (doubles the instance cost)."
  type        = bool
  default     = false
}

variable "db_backup_retention_days" {
  description = "Days of RDS automated backups (point-in-time recovery window)."
  type        = number
  default     = 7
}

variable "db_deletion_protection" {
  description = "Protect the database against deletion (and take a final snapshot when it is deleted)."
  type        = bool
  default     = true
}

variable "db_performance_insights" {
  description = "Turn on RDS Performance Insights (7 days free; not offered on every small instance class)."
  type        = bool
  default     = false
}

variable "db_require_tls" {
  description = "Require TLS on every connection to PostgreSQL: rds.force_ssl=1, and NOVA_DATABASE_URL asks for sslmode=require (encrypted; the server's certificate is not verified, see the README for verify-full). false sets rds.force_ssl=0 and sslmode=prefer: NOVA still encrypts, since RDS offers TLS, but a client without TLS (such as a NOVA image built before its PostgreSQL client had TLS) may connect in plain text."
  type        = bool
  default     = true
}

variable "redis_node_type" {
  description = "ElastiCache node type (Redis holds only the API's rate-limit counters)."
  type        = string
  default     = "cache.t4g.micro"
}

variable "documents_ia_days" {
  description = "Days after which documents move to S3 STANDARD_IA (at least 30)."
  type        = number
  default     = 90

  validation {
    condition     = var.documents_ia_days >= 30
    error_message = "S3 moves objects to STANDARD_IA no sooner than 30 days."
  }
}

variable "documents_archive_days" {
  description = "Days after which documents move to the archive storage class (at least 30 days after STANDARD_IA)."
  type        = number
  default     = 180
}

variable "documents_archive_storage_class" {
  description = "Archive storage class. GLACIER objects need a restore before NOVA can read them again (jobs on such documents fail); GLACIER_IR stays readable at once."
  type        = string
  default     = "GLACIER"

  validation {
    condition     = contains(["GLACIER", "GLACIER_IR", "DEEP_ARCHIVE"], var.documents_archive_storage_class)
    error_message = "documents_archive_storage_class must be GLACIER, GLACIER_IR or DEEP_ARCHIVE."
  }
}

variable "documents_expiration_days" {
  description = "Days after which documents' bytes are deleted from S3 (0: never). NOVA is also told to delete documents this old (NOVA_DOCUMENT_RETENTION_DAYS), so its records go first."
  type        = number
  default     = 365
}

variable "documents_noncurrent_days" {
  description = "Days that overwritten or deleted object versions are kept (versioning is on)."
  type        = number
  default     = 30
}

variable "job_retention_days" {
  description = "NOVA_RETENTION_DAYS: days finished jobs, with their results and events, are kept (0: forever)."
  type        = number
  default     = 30
}

# ---------------------------------------------------------------------------------------------------------------
# Model (the AI path), optional
# ---------------------------------------------------------------------------------------------------------------

variable "llm_base_url" {
  description = "NOVA_LLM_BASE_URL: an OpenAI-compatible Chat Completions endpoint (empty: rules only, no model)."
  type        = string
  default     = ""
}

variable "llm_model" {
  description = "NOVA_LLM_MODEL: the model name."
  type        = string
  default     = ""
}

# ---------------------------------------------------------------------------------------------------------------
# Logs and alarms
# ---------------------------------------------------------------------------------------------------------------

variable "log_retention_days" {
  description = "Days NOVA's CloudWatch log groups keep logs."
  type        = number
  default     = 30
}

variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic (empty: no subscription; subscribe anything to the topic output)."
  type        = string
  default     = ""
}

variable "alarm_5xx_ratio" {
  description = "Alarm when more than this fraction of ALB requests get a 5xx from NOVA over 5 minutes."
  type        = number
  default     = 0.05
}

variable "alarm_p99_latency_seconds" {
  description = "Alarm when the ALB's p99 target response time is above this over 10 minutes."
  type        = number
  default     = 2.5
}

variable "alarm_cpu_percent" {
  description = "Alarm when an ECS service's or the database's average CPU is above this over 15 minutes."
  type        = number
  default     = 85
}

variable "alarm_db_free_storage_gb" {
  description = "Alarm when the database's free storage falls below this many GiB."
  type        = number
  default     = 5
}

variable "enable_queue_metrics" {
  description = "Run a CloudWatch agent beside each NOVA task that turns NOVA's Prometheus metrics (queue age and depth, job and sandbox outcomes) into CloudWatch metrics, and alarm on them (about $0.30 per metric and month)."
  type        = bool
  default     = true
}

variable "enable_container_insights" {
  description = "Turn on ECS Container Insights (per-task CPU, memory and network metrics; about $10/month for this cluster)."
  type        = bool
  default     = false
}

variable "alarm_queue_age_seconds" {
  description = "Alarm when the oldest ready job of any workflow has waited longer than this (needs enable_queue_metrics)."
  type        = number
  default     = 300
}

variable "cloudwatch_agent_image" {
  description = "Image of the CloudWatch agent sidecar (pin a version tag in production)."
  type        = string
  default     = "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:latest"
}
