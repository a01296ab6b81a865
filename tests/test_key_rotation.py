"""vault_rotate_keys: every encrypted value readable with only the new key afterwards."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import InvalidToken
from django.core.management import call_command

from vault_wallets import services
from vault_wallets.models import Customer, ImportChunk, ImportJob, SavedPaymentMethod
from vault_wallets.services import keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def fernet_keys(settings):
    def use(*values):
        settings.FERNET_KEYS = list(values)
        keys.reset_field_key_caches()

    yield use
    keys.reset_field_key_caches()


def every_encrypted_value():
    values = {}
    for model, fields in keys.encrypted_fields():
        for row in model._base_manager.order_by("pk").values_list("pk", *[f.attname for f in fields]):
            for f, value in zip(fields, row[1:], strict=True):
                values[(model._meta.label, f.name, row[0])] = value
    return values


def test_discovers_every_encrypted_column():
    columns = {(m._meta.label, f.name) for m, fields in keys.encrypted_fields() for f in fields}
    assert {("vault_wallets.SavedPaymentMethod", "processor_token"),
            ("vault_wallets.SavedPaymentMethod", "processor_method_id"),
            ("vault_wallets.Customer", "processor_customer_secret"),
            ("vault_wallets.ImportChunk", "data")} <= columns


def test_rotation_then_removing_the_old_key(fernet_keys, customer, card_token):
    fernet_keys("the-old-key")
    for number in ("4242424242424242", "5555555555554444", "4000000000000002"):
        services.add_payment_method(customer, card_token(number))
    Customer.objects.filter(pk=customer.pk).update(processor_customer_secret="customer-secret-1")
    job = ImportJob.objects.create(account="default", format="csv")
    ImportChunk.objects.create(job=job, seq=0, data="customer_reference,token\nc,tok\n")
    before = every_encrypted_value()
    assert len(before) >= 8 and "customer-secret-1" in before.values()

    # Without rotation the old values are unreadable once the old key is gone (the test can fail).
    fernet_keys("the-new-key")
    with pytest.raises(InvalidToken):
        list(SavedPaymentMethod.objects.values_list("processor_token", flat=True))

    fernet_keys("the-new-key", "the-old-key")  # step 1: add the new key first
    out = io.StringIO()
    call_command("vault_rotate_keys", "--batch-size", "2", stdout=out, stderr=io.StringIO())  # step 2
    assert f"re-encrypted {len(before)} value(s); 0 already under the first key" in out.getvalue()
    again = io.StringIO()
    call_command("vault_rotate_keys", stdout=again, stderr=io.StringIO())  # resumable: nothing left to do
    assert f"re-encrypted 0 value(s); {len(before)} already under the first key" in again.getvalue()

    fernet_keys("the-new-key")  # step 3: remove the old key
    assert every_encrypted_value() == before


def test_unreadable_values_are_reported_and_the_command_fails(fernet_keys, customer, card_token):
    fernet_keys("a-key-that-will-be-lost")
    services.add_payment_method(customer, card_token())
    fernet_keys("another-key")
    err = io.StringIO()
    with pytest.raises(Exception, match="could not be decrypted"):
        call_command("vault_rotate_keys", stdout=io.StringIO(), stderr=err)
    assert "vault_wallets.SavedPaymentMethod.processor_token pk=" in err.getvalue()


def test_batched_compare_and_set_leaves_values_written_meanwhile(fernet_keys, customer, card_token):
    """The batched write (UPDATE ... FROM (VALUES ...) on PostgreSQL) only replaces a value that is
    still the one read: a token the shop rewrote meanwhile is kept, the row's other column and
    the other rows are rotated."""
    from django.db import connection

    fernet_keys("the-old-key")
    methods = [services.add_payment_method(customer, card_token(n))[0]
               for n in ("4242424242424242", "5555555555554444", "4000000000000002")]
    fernet_keys("the-new-key", "the-old-key")
    primary, others = keys._fernets()
    fields = [SavedPaymentMethod._meta.get_field(name) for name in ("processor_token", "processor_method_id")]
    before = {m.pk: (m.processor_token, m.processor_method_id) for m in SavedPaymentMethod.objects.all()}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, {fields[0].column}, {fields[1].column} FROM {SavedPaymentMethod._meta.db_table}")
        raw = {pk: (bytes(a), bytes(b)) for pk, a, b in cursor.fetchall()}
    batch = [(pk, {f: (old, keys.rotate_value(primary, others, old)) for f, old in zip(fields, olds, strict=True)})
             for pk, olds in raw.items()]
    assert all(new not in (None, keys._UNREADABLE) for _, ch in batch for _, new in ch.values())
    SavedPaymentMethod.objects.filter(pk=methods[0].pk).update(processor_token="written-meanwhile")
    assert keys.compare_and_set(SavedPaymentMethod, fields, batch, connection) == {fields[0]: 2, fields[1]: 3}
    fernet_keys("the-new-key")  # the old key is gone: every value must read under the new one
    after = {m.pk: (m.processor_token, m.processor_method_id) for m in SavedPaymentMethod.objects.all()}
    assert after[methods[0].pk] == ("written-meanwhile", before[methods[0].pk][1])
    assert {pk: v for pk, v in after.items() if pk != methods[0].pk} == {
        pk: v for pk, v in before.items() if pk != methods[0].pk}
    assert keys.rotate_value(primary, others, primary.fernet.encrypt(b"x")) is None  # already current


@pytest.mark.django_db(transaction=True)  # the workers are other processes: they see committed rows only
def test_parallel_workers_rotate_every_slice_and_report_the_sum(fernet_keys, customer, card_token):
    """--jobs N: each table's primary keys cut into N slices, one forked worker per slice on
    PostgreSQL (one process elsewhere); the same report and result as one process."""
    fernet_keys("the-old-key")
    methods = [services.add_payment_method(customer, card_token(number))[0]
               for number in ("4242424242424242", "5555555555554444", "4000000000000002", "378282246310005",
                              "6011111111111117", "4000000000001216")]
    Customer.objects.filter(pk=customer.pk).update(processor_customer_secret="customer-secret-1")
    lost = methods[2]
    before = {k: v for k, v in every_encrypted_value().items() if k[0] != "vault_wallets.SavedPaymentMethod"
              or k[2] != lost.pk}
    fernet_keys("a-lost-key")
    SavedPaymentMethod.objects.filter(pk=lost.pk).update(processor_token="under-a-lost-key")
    fernet_keys("the-new-key", "the-old-key")
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(Exception, match="1 value"):
        call_command("vault_rotate_keys", "--jobs", "3", "--batch-size", "2", stdout=out, stderr=err)
    assert f"re-encrypted {len(before) + 1} value(s); 0 already under the first key" in out.getvalue()
    assert err.getvalue().count("unreadable") == 1
    assert f"vault_wallets.SavedPaymentMethod.processor_token pk={lost.pk}" in err.getvalue()
    SavedPaymentMethod.objects.filter(pk=lost.pk).update(processor_token="rewritten")  # the shop replaces it
    again = io.StringIO()
    call_command("vault_rotate_keys", "--jobs", "2", "--batch-size", "2", stdout=again, stderr=io.StringIO())
    assert f"re-encrypted 0 value(s); {len(before) + 2} already under the first key" in again.getvalue()
    fernet_keys("the-new-key")
    after = every_encrypted_value()
    assert after.pop(("vault_wallets.SavedPaymentMethod", "processor_token", lost.pk)) == "rewritten"
    assert after.pop(("vault_wallets.SavedPaymentMethod", "processor_method_id", lost.pk)) == lost.processor_method_id
    assert after == before


def _rotation_pair():
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key(), Fernet.generate_key()
    return keys.RotationKey(new), [keys.RotationKey(Fernet.generate_key()), keys.RotationKey(old)]


@pytest.mark.parametrize("size", [*range(0, 50), 63, 64, 65, 80, 1000, 5000])
def test_rotated_tokens_are_fernet_tokens_of_the_same_plaintext_and_timestamp(size):
    """The rotation reads and writes Fernet tokens itself (keys.RotationKey): what it writes must
    be what ``cryptography.fernet`` reads, for every padding length and both encryption paths."""
    import os

    primary, others = _rotation_pair()
    stranger, old_key = others
    plain = os.urandom(size)
    old = old_key.fernet.encrypt_at_time(plain, 1_700_000_000 + size)
    new = keys.rotate_value(primary, others, old)
    assert new not in (None, keys._UNREADABLE)
    assert primary.fernet.decrypt(new) == plain
    assert primary.fernet.extract_timestamp(new) == 1_700_000_000 + size
    assert keys.decode_token(new)[9:25] != keys.decode_token(old)[9:25]  # a fresh IV
    assert keys.rotate_value(primary, others, new) is None  # already current
    assert primary.open(keys.decode_token(new)) == plain
    assert stranger.open(keys.decode_token(old)) is None  # not this key's
    assert old_key.open(keys.decode_token(old)) == plain


def test_two_rotated_tokens_of_one_plaintext_differ():
    primary, others = _rotation_pair()
    old = others[1].fernet.encrypt(b"sbxpm_same")
    assert keys.rotate_value(primary, others, old) != keys.rotate_value(primary, others, old)


def test_tampered_malformed_and_foreign_tokens_are_unreadable_as_for_fernet():
    """Whatever ``cryptography.fernet`` refuses under every key is reported unreadable."""
    import base64
    import hashlib
    import hmac

    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    primary, others = _rotation_pair()
    old_key = others[1]
    token = old_key.fernet.encrypt(b"tok_1234567890abcdef")
    data = base64.urlsafe_b64decode(token)
    cases = [Fernet(Fernet.generate_key()).encrypt(b"foreign"), b"", b"not base64 !",
             base64.urlsafe_b64encode(data[:-1]), base64.urlsafe_b64encode(b"\x81" + data[1:])]
    for i in range(len(data)):  # every byte flipped: the version, timestamp, IV, ciphertext or HMAC
        cases.append(base64.urlsafe_b64encode(data[:i] + bytes((data[i] ^ 1,)) + data[i + 1:]))
    # Correctly signed by the old key, but a ciphertext that is not whole blocks, or bad padding.
    sign, enc = old_key.fernet._signing_key, old_key.fernet._encryption_key

    def signed(body):
        return base64.urlsafe_b64encode(body + hmac.new(sign, body, hashlib.sha256).digest())

    head = data[:25]
    encryptor = Cipher(algorithms.AES(enc), modes.CBC(data[9:25])).encryptor()
    bad_padding = encryptor.update(b"x" * 15 + b"\x11") + encryptor.finalize()
    encryptor = Cipher(algorithms.AES(enc), modes.CBC(data[9:25])).encryptor()
    zero_padding = encryptor.update(b"x" * 15 + b"\x00") + encryptor.finalize()
    encryptor = Cipher(algorithms.AES(enc), modes.CBC(data[9:25])).encryptor()
    mixed_padding = encryptor.update(b"x" * 13 + b"\x02\x03\x03") + encryptor.finalize()
    cases += [signed(head), signed(head + b"x" * 20), signed(head + bad_padding), signed(head + zero_padding),
              signed(head + mixed_padding), signed(b"\x81" + data[1:-32])]
    for case in cases:
        for key in (primary, *others):
            with pytest.raises(InvalidToken):
                key.fernet.decrypt(case)
        assert keys.rotate_value(primary, others, case) is keys._UNREADABLE, case
    assert keys.rotate_value(primary, others, token) not in (None, keys._UNREADABLE)  # the untouched token


def test_a_key_listed_twice_is_not_an_old_key(settings):
    settings.FERNET_KEYS = ["same-key", "other-key", "same-key", "other-key"]
    primary, others = keys._fernets()
    assert len(others) == 1
    assert keys.rotate_value(primary, others, primary.fernet.encrypt(b"x")) is None


@pytest.mark.django_db(transaction=True)  # outside a transaction the writes go through keys._Writer's thread
def test_writer_thread_rotates_everything_and_raises_a_failed_write(fernet_keys, customer, card_token, monkeypatch):
    fernet_keys("the-old-key")
    for number in ("4242424242424242", "5555555555554444", "4000000000000002"):
        services.add_payment_method(customer, card_token(number))
    before = every_encrypted_value()
    fernet_keys("the-new-key", "the-old-key")
    real = keys.compare_and_set

    def failing(*args, **kwargs):
        raise RuntimeError("the write failed")

    monkeypatch.setattr(keys, "compare_and_set", failing)
    with pytest.raises(RuntimeError, match="the write failed"):
        keys.rotate_keys(batch_size=2)
    monkeypatch.setattr(keys, "compare_and_set", real)
    report = keys.rotate_keys(batch_size=2)
    assert (report.rotated, report.current, report.unreadable) == (len(before), 0, [])
    fernet_keys("the-new-key")
    assert every_encrypted_value() == before
