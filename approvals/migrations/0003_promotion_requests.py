"""Promotion requests: an owner's ask for the next rung with its evidence frozen as
canonical JSON and hashed, and the certificate an approval issued; at most one open per
workflow (a partial unique index), one rung at a time (a check)."""

import django.db.models.deletion
import django.db.models.expressions
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('approvals', '0002_role_changes'),
        ('ladder', '0006_certificates'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='PromotionRequest',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('from_rung', models.PositiveSmallIntegerField(choices=[(0, 'L0 Assistant'), (1, 'L1 Draft + approval'), (2, 'L2 Recommend'), (3, 'L3 Execute with approval'), (4, 'L4 Execute under policy'), (5, 'L5 Autonomous')])),
                ('to_rung', models.PositiveSmallIntegerField(choices=[(0, 'L0 Assistant'), (1, 'L1 Draft + approval'), (2, 'L2 Recommend'), (3, 'L3 Execute with approval'), (4, 'L4 Execute under policy'), (5, 'L5 Autonomous')])),
                ('requested_at', models.DateTimeField(auto_now_add=True)),
                ('note', models.TextField(blank=True)),
                ('evidence_canonical', models.TextField()),
                ('evidence_hash', models.CharField(max_length=64)),
                ('state', models.CharField(choices=[('open', 'Open'), ('approved', 'Approved'), ('declined', 'Declined'), ('withdrawn', 'Withdrawn')], default='open', max_length=10)),
                ('decided_at', models.DateTimeField(blank=True, null=True)),
                ('decision_reason', models.TextField(blank=True)),
                ('certificate', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='ladder.certificate')),
                ('decided_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('requested_by', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('snapshot', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='ladder.gatesnapshot')),
                ('workflow', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='ladder.workflow')),
            ],
            options={
                'ordering': ['-requested_at', '-id'],
                'indexes': [models.Index(fields=['state', '-requested_at'], name='promotion_by_state')],
                'constraints': [models.UniqueConstraint(condition=models.Q(('state', 'open')), fields=('workflow',), name='promotion_one_open_per_workflow'), models.CheckConstraint(condition=models.Q(('to_rung', django.db.models.expressions.CombinedExpression(models.F('from_rung'), '+', models.Value(1)))), name='promotion_one_rung')],
            },
        ),
    ]
