"""Webhook deliveries encrypted at rest; de-duplication on a digest of the full event id.

``body`` and ``headers`` become Fernet-encrypted (``FERNET_KEYS``, like processor tokens):
existing rows are encrypted in place by copying through new columns.  ``event_id`` keeps the
whole id (it was cut at 255 characters) and ``event_id_hash`` (SHA-256 of it) replaces it in
the unique constraint.
"""

import hashlib

import fernet_fields.fields
from django.db import migrations, models

import vault_wallets.fields


def _digest(event_id):
    return hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()


def encrypt_and_hash(apps, schema_editor):
    WebhookEvent = apps.get_model("vault_wallets", "WebhookEvent")
    for event in WebhookEvent.objects.all().iterator(chunk_size=500):
        event.event_id_hash = _digest(event.event_id)
        event.encrypted_body = event.body
        event.encrypted_headers = event.headers or {}
        event.save(update_fields=["event_id_hash", "encrypted_body", "encrypted_headers"])


def decrypt(apps, schema_editor):
    WebhookEvent = apps.get_model("vault_wallets", "WebhookEvent")
    for event in WebhookEvent.objects.all().iterator(chunk_size=500):
        event.body = event.encrypted_body
        event.headers = event.encrypted_headers or {}
        event.event_id = event.event_id[:255]
        event.save(update_fields=["body", "headers", "event_id"])


class Migration(migrations.Migration):

    dependencies = [
        ("vault_wallets", "0003_operations"),
    ]

    operations = [
        migrations.AlterField(
            model_name="webhookevent",
            name="event_id",
            field=models.TextField(help_text="The processor's event id, in full."),
        ),
        migrations.AddField(
            model_name="webhookevent",
            name="event_id_hash",
            field=models.CharField(default="", editable=False, max_length=64,
                                   help_text="SHA-256 of the full event id: the de-duplication key."),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="webhookevent",
            name="encrypted_body",
            field=fernet_fields.fields.EncryptedTextField(default=""),
        ),
        migrations.AddField(
            model_name="webhookevent",
            name="encrypted_headers",
            field=vault_wallets.fields.EncryptedJSONField(default=dict, blank=True),
        ),
        migrations.RunPython(encrypt_and_hash, decrypt, elidable=False),
        migrations.RemoveConstraint(
            model_name="webhookevent",
            name="vw_webhook_event_once",
        ),
        migrations.AddConstraint(
            model_name="webhookevent",
            constraint=models.UniqueConstraint(fields=("account", "event_id_hash"), name="vw_webhook_event_once_hash"),
        ),
        migrations.RemoveField(model_name="webhookevent", name="body"),
        migrations.RemoveField(model_name="webhookevent", name="headers"),
        migrations.RenameField(model_name="webhookevent", old_name="encrypted_body", new_name="body"),
        migrations.RenameField(model_name="webhookevent", old_name="encrypted_headers", new_name="headers"),
        migrations.AlterField(
            model_name="webhookevent",
            name="body",
            field=fernet_fields.fields.EncryptedTextField(help_text="The delivery as received (encrypted)."),
        ),
        migrations.AlterField(
            model_name="webhookevent",
            name="headers",
            field=vault_wallets.fields.EncryptedJSONField(blank=True, default=dict,
                                                          help_text="Sanitized: no signatures or secrets."),
        ),
    ]
