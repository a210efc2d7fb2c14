"""The Django admin is for superusers only.

Roles are object permissions that only the roles page changes, on record. A staff account
allowed to edit users in the admin could give itself superuser status or global
permissions there, around that record; so the admin answers superusers alone, whatever
model permissions a staff account holds.
"""

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest


class SuperuserAdminSite(AdminSite):
    def has_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser


class SuperuserAdminConfig(AdminConfig):
    default_site = "ladder.adminsite.SuperuserAdminSite"
