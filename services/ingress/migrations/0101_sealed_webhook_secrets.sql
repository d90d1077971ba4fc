-- Webhook signing secrets are kept sealed (AES-256-GCM under the configured webhook_key), never in
-- plaintext. Rows written before this are sealed by ingress when it next starts (their text does
-- not begin with the sealed form's "v1:").
ALTER TABLE webhooks RENAME COLUMN secret TO sealed_secret;
