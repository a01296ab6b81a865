"""Create the demo shopper, the staff user and a few products (idempotent)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from store.models import Product

DEMO_USERS = [
    # username, password, staff
    ("shopper", "shopper-demo-pass", False),
    ("shopper2", "shopper2-demo-pass", False),  # a second shopper: sees none of the first one's cards
    ("staff", "staff-demo-pass", True),
]
PRODUCTS = [
    ("coffee-beans", "Single-origin coffee beans (1 kg)", 2400),
    ("pour-over-kettle", "Gooseneck pour-over kettle", 5900),
    ("ceramic-dripper", "Ceramic dripper", 2250),
]


class Command(BaseCommand):
    help = "Create the demo shopper and staff users and the demo products."

    def handle(self, *args, **options):
        User = get_user_model()
        for username, password, staff in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com", "first_name": username.title()})
            user.is_staff = user.is_superuser = staff
            user.set_password(password)
            user.save()
            self.stdout.write(f"{'created' if created else 'updated'} user {username!r} (password {password!r})")
        for slug, name, price in PRODUCTS:
            Product.objects.update_or_create(slug=slug, defaults={"name": name, "price_cents": price})
        self.stdout.write(f"{len(PRODUCTS)} products ready")
        self._demo_vault()

    def _demo_vault(self):
        """A customer for the admin screens: one card expiring this month, one far off, one charge."""
        from django.utils import timezone

        from vault_wallets import conf, services
        from vault_wallets.models import Customer
        from vault_wallets.processors import get_processor

        account = conf.default_account()
        processor = get_processor(account)
        if Customer.objects.filter(account=account, reference_id="demo-jordan").exists():
            return
        if not hasattr(processor, "tokenize_card"):
            self.stdout.write("demo vault data needs the sandbox processor; skipped")
            return
        today = timezone.localdate()
        customer = services.create_customer(account, "demo-jordan", name="Jordan Demo",
                                            email="jordan@example.com")
        soon = processor.tokenize_card("5555555555554444", today.month, today.year, "123", "Jordan Demo")
        services.add_payment_method(customer, soon, label="expires this month")
        services.add_payment_method(customer, processor.tokenize_card("4242424242424242", 12, 2034, "123",
                                                                      "Jordan Demo"), make_default=True)
        services.charge(customer, 2250, "USD", idempotency_key="demo-order-1", reference="demo-order-1")
        self.stdout.write("demo vault customer 'demo-jordan' with a card expiring this month")
