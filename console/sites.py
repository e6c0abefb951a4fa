"""The ops console's admin site: the dashboard as its home, the customer 360 and job pages,
and two guards around every admin view it serves.

- An action the user may not run (its ``allowed_permissions``) is a 403, not a silent no-op.
- Every state-changing request (a POST: an action, a form, a custom page) is written to the
  audit log with the objects it touched before and after (secrets masked).
"""
from __future__ import annotations

from functools import wraps
from typing import Any, Callable, TypeVar, cast

from django.contrib import admin
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path

# Site views that change nothing an operator does to billing (or that carry a password).
UNAUDITED_VIEWS = {"login", "logout", "password_change", "i18n_javascript"}
# Request parameters never copied into the audit log.
UNLOGGED_PARAMETERS = {"csrfmiddlewaretoken", "password", "password1", "password2", "old_password",
                       "new_password1", "new_password2", helpers.ACTION_CHECKBOX_NAME}
SNAPSHOT_LIMIT = 500
View = TypeVar("View", bound=Callable[..., Any])


class ConsoleAdminSite(admin.AdminSite):
    site_header = "Fusion Billing"
    site_title = "Fusion Billing ops console"
    index_title = "Dashboard"
    index_template = "console/dashboard.html"

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        from console import views

        return views.dashboard(self, request, extra_context)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        from console import views

        return [
            path("console/customers/<uuid:customer_id>/", self.admin_view(views.customer_360(self)),
                 name="console_customer_360"),
            path("console/jobs/<int:job_id>/", self.admin_view(views.job_page(self)), name="console_job"),
            path("console/jobs/<int:job_id>/progress.json", self.admin_view(views.job_progress),
                 name="console_job_progress"),
            path("console/reconcile/", self.admin_view(views.start_reconciliation(self)),
                 name="console_reconcile"),
        ] + super().get_urls()

    def admin_view(self, view: View, cacheable: bool = False) -> View:
        return cast(View, super().admin_view(self._guarded(view), cacheable))

    def _guarded(self, view: Callable[..., Any]) -> Callable[..., Any]:
        if getattr(view, "__name__", "") in UNAUDITED_VIEWS:
            return view
        model_admin = getattr(view, "__self__", None)
        if not isinstance(model_admin, admin.ModelAdmin):
            model_admin = None

        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if request.method != "POST":
                return view(request, *args, **kwargs)
            return _audited(view, model_admin, request, *args, **kwargs)

        return guarded


def _action_targets(model_admin: admin.ModelAdmin, request: HttpRequest) -> list[str]:
    if request.POST.get("select_across") == "1":
        queryset = model_admin.get_changelist_instance(request).get_queryset(request)
        return [str(pk) for pk in queryset.values_list("pk", flat=True)[:SNAPSHOT_LIMIT]]
    return request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)[:SNAPSHOT_LIMIT]


def _snapshot(model: Any, ids: list[str]) -> dict[str, Any]:
    from console import services

    if model is None or not ids:
        return {}
    try:
        return services.snapshot(model._default_manager.filter(pk__in=ids))
    except (ValueError, ValidationError):  # a malformed id: the view itself answers it
        return {}


def _audited(view: Callable[..., Any], model_admin: admin.ModelAdmin | None, request: HttpRequest,
             *args: Any, **kwargs: Any) -> Any:
    from console import services

    action_name = request.POST.get("action") or ""
    is_action = model_admin is not None and bool(action_name) and view.__name__ == "changelist_view"
    ids: list[str] = []
    if is_action and model_admin is not None:
        if action_name not in model_admin.get_actions(request):
            # Not offered to this user (its allowed_permissions): refuse, never ignore; and
            # keep the attempt in the log.
            services.record_audit(
                user=request.user, action=f"refused action {action_name}", path=request.path,
                target=model_admin.model._meta.label_lower,
                object_ids=request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)[:SNAPSHOT_LIMIT], status_code=403)
            raise PermissionDenied
        ids = _action_targets(model_admin, request)
        label = f"action {action_name}"
    elif model_admin is not None and kwargs.get("object_id"):
        ids = [str(kwargs["object_id"])]
        label = view.__name__.replace("_view", "")
    else:
        label = view.__name__.replace("_view", "")
    model = model_admin.model if model_admin is not None else None
    before = _snapshot(model, ids)
    response = view(request, *args, **kwargs)
    if hasattr(response, "render") and not getattr(response, "is_rendered", True):
        response.render()
    after = _snapshot(model, ids)
    parameters = {key: (values if len(values) > 1 else values[0])
                  for key, values in request.POST.lists() if key not in UNLOGGED_PARAMETERS}
    services.record_audit(
        user=request.user, action=label, path=request.path,
        target=model._meta.label_lower if model is not None else "", object_ids=ids, before=before, after=after,
        parameters=parameters, status_code=getattr(response, "status_code", 0))
    return response
