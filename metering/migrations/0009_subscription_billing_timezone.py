from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("metering", "0008_catalogue_rounding_min_amount_window_terms"),
    ]

    operations = [
        # Existing subscriptions had their windows counted in UTC: they keep that calendar.
        migrations.AddField(
            model_name="subscription",
            name="billing_timezone",
            field=models.CharField(default="UTC", editable=False, max_length=64),
        ),
    ]
