# notification_svc sends order confirmations from this address.
resource "aws_ses_email_identity" "sender" {
  email = var.sender_email
}
