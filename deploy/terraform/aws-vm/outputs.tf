output "public_ip" {
  description = "The VM's Elastic IP (point var.domain_name's A record here)."
  value       = aws_eip.nova.public_ip
}

output "api_url" {
  description = "Where NOVA answers."
  value       = var.domain_name == "" ? "http://${aws_eip.nova.public_ip}:8080" : "https://${var.domain_name}"
}

output "api_key_secret_arn" {
  description = "Secrets Manager secret holding NOVA_API_KEY, the API key of the tenant default that NOVA adds at start."
  value       = aws_secretsmanager_secret.api_key.arn
}

output "api_key_command" {
  description = "The command that prints the API key of the tenant default (an AWS CLI allowed to read the secret and use the KMS key)."
  value       = "aws secretsmanager get-secret-value --region ${var.region} --secret-id ${aws_secretsmanager_secret.api_key.arn} --query SecretString --output text"
}

output "instance_id" {
  description = "The VM (`aws ssm start-session --target ID`, then `sudo docker exec nova nova keys create --tenant NAME`)."
  value       = aws_instance.nova.id
}

output "data_volume_id" {
  description = "The EBS volume holding NOVA's data directory."
  value       = aws_ebs_volume.data.id
}

output "db_endpoint" {
  description = "RDS PostgreSQL endpoint (with enable_rds)."
  value       = var.enable_rds ? aws_db_instance.main[0].endpoint : null
}

output "llm_api_key_secret_arn" {
  description = "Secrets Manager secret for NOVA_LLM_API_KEY: put the provider's key, then `systemctl restart nova` on the VM."
  value       = aws_secretsmanager_secret.llm_api_key.arn
}

output "log_group" {
  description = "CloudWatch log group of NOVA's (and Caddy's) logs."
  value       = aws_cloudwatch_log_group.nova.name
}
