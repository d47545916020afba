# The public entry: an ALB with an HTTPS listener (ACM certificate) in front of the API tasks. Port 80 only
# redirects. Target health is NOVA's /readyz (the database and the blob store answer).

resource "aws_lb" "api" {
  #checkov:skip=CKV_AWS_91:ALB access logs need a log bucket of their own; NOVA logs every request (method, route, status, request id) as JSON in CloudWatch Logs. Turn them on where an edge log is required.
  #checkov:skip=CKV2_AWS_28:A WAF web ACL costs from ~$6/month plus its rules; NOVA rate-limits per API key itself. Attach one where the threat model asks for it.
  name                       = var.name
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.alb.id]
  subnets                    = aws_subnet.public[*].id
  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection
  idle_timeout               = 120
}

resource "aws_lb_target_group" "api" {
  name                 = "${var.name}-api"
  port                 = 8080
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = aws_vpc.main.id
  deregistration_delay = 30

  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.api.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }
}

# GET /metrics answers other hosts only with a NOVA API key; the public listener does not serve it at all.
resource "aws_lb_listener_rule" "no_metrics" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 10

  action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json"
      message_body = "{\"error\":{\"code\":\"route_not_found\",\"message\":\"not served here\"}}"
      status_code  = "404"
    }
  }

  condition {
    path_pattern {
      values = ["/metrics"]
    }
  }
}
