output "api_url" {
  description = "Where the API answers (point a DNS name covered by the certificate at alb_dns_name)."
  value       = "https://${aws_lb.api.dns_name}"
}

output "alb_dns_name" {
  description = "DNS name of the load balancer, for a CNAME or alias record."
  value       = aws_lb.api.dns_name
}

output "alb_zone_id" {
  description = "Hosted zone of the load balancer, for a Route 53 alias record."
  value       = aws_lb.api.zone_id
}

output "ecs_cluster" {
  description = "ECS cluster name (for `aws ecs execute-command`)."
  value       = aws_ecs_cluster.main.name
}

output "api_service" {
  description = "ECS service of the API."
  value       = aws_ecs_service.api.name
}

output "worker_service" {
  description = "ECS service of the workers."
  value       = aws_ecs_service.worker.name
}

output "documents_bucket" {
  description = "S3 bucket of documents' bytes (NOVA_BLOB_URL is s3://BUCKET/documents)."
  value       = aws_s3_bucket.documents.bucket
}

output "db_endpoint" {
  description = "RDS PostgreSQL endpoint."
  value       = aws_db_instance.main.endpoint
}

output "redis_endpoint" {
  description = "ElastiCache Redis primary endpoint."
  value       = aws_elasticache_replication_group.main.primary_endpoint_address
}

output "database_url_secret_arn" {
  description = "Secrets Manager secret holding NOVA_DATABASE_URL (sslmode=require; prefer with db_require_tls = false)."
  value       = aws_secretsmanager_secret.database_url.arn
}

output "redis_url_secret_arn" {
  description = "Secrets Manager secret holding NOVA_REDIS_URL of the API tasks (rediss:// with the AUTH token)."
  value       = aws_secretsmanager_secret.redis_url.arn
}

output "llm_api_key_secret_arn" {
  description = "Secrets Manager secret for NOVA_LLM_API_KEY: put the provider's key with `aws secretsmanager put-secret-value`, then redeploy."
  value       = aws_secretsmanager_secret.llm_api_key.arn
}

output "api_key_secret_arn" {
  description = "Secrets Manager secret holding NOVA_API_KEY, the API key of the tenant default that the API tasks add at start."
  value       = aws_secretsmanager_secret.api_key.arn
}

output "api_key_command" {
  description = "The command that prints the API key of the tenant default (an AWS CLI allowed to read the secret and use the KMS key)."
  value       = "aws secretsmanager get-secret-value --region ${var.region} --secret-id ${aws_secretsmanager_secret.api_key.arn} --query SecretString --output text"
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms publish to."
  value       = aws_sns_topic.alarms.arn
}

output "kms_key_arn" {
  description = "The KMS key that encrypts the bucket, the database, Redis, the secrets and the logs."
  value       = aws_kms_key.main.arn
}
