"""OpenAPI 3 schema and an offline docs page (no CDN: Swagger UI/Redoc from drf-spectacular-sidecar)."""
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny


@extend_schema(exclude=True)
class SchemaView(SpectacularAPIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]


class DocsView(SpectacularSwaggerView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    url_name = "api-schema"


class RedocView(SpectacularRedocView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    url_name = "api-schema"


# --- Schema extensions for classes this area does not own (drf-spectacular's official hooks) ---
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiViewExtension  # noqa: E402
from drf_spectacular.types import OpenApiTypes  # noqa: E402
from drf_spectacular.utils import OpenApiResponse, inline_serializer  # noqa: E402
from rest_framework import serializers  # noqa: E402

_JSON = OpenApiResponse(OpenApiTypes.OBJECT, description="Lago-shaped JSON.")


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "billing_project.api.authentication.ApiKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "The service's API key: `Authorization: Bearer fb_…`."}


class CachedApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """The same key on the event endpoints, where a valid key is remembered for a few seconds."""

    target_class = "identity.api.authentication.CachedApiKeyAuthentication"
    name = "bearerAuthIngest"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "The service's API key (cached per process for API_KEY_CACHE_SECONDS)."}


class OrganizationViewSchema(OpenApiViewExtension):
    target_class = "billing_project.api.organization.OrganizationView"

    def view_replacement(self):
        class Fixed(self.target_class):
            @extend_schema(operation_id="organization_retrieve", responses={200: _JSON, 401: _JSON},
                           description="The calling service, as Lago's organization.")
            def get(self, request):
                return super().get(request)

            @extend_schema(operation_id="organization_update", responses={200: _JSON, 400: _JSON, 401: _JSON,
                                                                          422: _JSON},
                           request=inline_serializer("OrganizationBody", {"organization": inline_serializer(
                               "OrganizationInput", {"name": serializers.CharField(required=False),
                                                     "default_currency": serializers.CharField(required=False)})}))
            def put(self, request):
                return super().put(request)

        return Fixed


class _HealthSchema(OpenApiViewExtension):
    def view_replacement(self):
        class Fixed(self.target_class):
            @extend_schema(responses={200: _JSON, 503: _JSON}, auth=[])
            def get(self, request):
                return super().get(request)

        return Fixed


class LagoHealthSchema(_HealthSchema):
    target_class = "billing_project.api.health.LagoHealthView"


class OpsHealthSchema(_HealthSchema):
    target_class = "billing_project.api.health.OpsHealthView"


# Views of other apps that carry no schema annotations yet. Each replacement applies only
# while the owner has not annotated the view itself (then the owner's schema wins).
from drf_spectacular.utils import OpenApiParameter  # noqa: E402

_LAGO_ID = OpenApiParameter("lago_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                            description="The webhook endpoint's lago_id.")
_PAGE = [OpenApiParameter("page", OpenApiTypes.INT, description="Page number, from 1."),
         OpenApiParameter("per_page", OpenApiTypes.INT, description="Items per page.")]


def _annotated(view_class, *methods: str) -> bool:
    return any(hasattr(getattr(view_class, m, None), "kwargs") or
               getattr(getattr(view_class, m, None), "_spectacular_annotation", None) for m in methods)


def _endpoint_body(name: str, serializer_name: str):
    from webhooks.api import views

    return inline_serializer(name, {"webhook_endpoint": getattr(views, serializer_name)()})


class WebhookEndpointListSchema(OpenApiViewExtension):
    target_class = "webhooks.api.views.WebhookEndpointListView"

    def view_replacement(self):
        if _annotated(self.target_class, "get", "post"):
            return self.target_class

        class Fixed(self.target_class):
            @extend_schema(operation_id="webhook_endpoints_list", parameters=_PAGE,
                           responses={200: _JSON, 401: _JSON})
            def get(self, request):
                return super().get(request)

            @extend_schema(operation_id="webhook_endpoints_create",
                           request=_endpoint_body("WebhookEndpointBody", "CreateEndpointInput"),
                           responses={200: _JSON, 400: _JSON, 401: _JSON, 422: _JSON})
            def post(self, request):
                return super().post(request)

        return Fixed


class WebhookEndpointDetailSchema(OpenApiViewExtension):
    target_class = "webhooks.api.views.WebhookEndpointDetailView"

    def view_replacement(self):
        if _annotated(self.target_class, "get", "put", "delete"):
            return self.target_class

        class Fixed(self.target_class):
            @extend_schema(operation_id="webhook_endpoints_retrieve", parameters=[_LAGO_ID],
                           responses={200: _JSON, 401: _JSON, 404: _JSON})
            def get(self, request, lago_id):
                return super().get(request, lago_id)

            @extend_schema(operation_id="webhook_endpoints_update", parameters=[_LAGO_ID],
                           request=_endpoint_body("WebhookEndpointUpdateBody", "UpdateEndpointInput"),
                           responses={200: _JSON, 400: _JSON, 401: _JSON, 404: _JSON, 422: _JSON})
            def put(self, request, lago_id):
                return super().put(request, lago_id)

            @extend_schema(operation_id="webhook_endpoints_destroy", parameters=[_LAGO_ID],
                           responses={200: _JSON, 401: _JSON, 404: _JSON})
            def delete(self, request, lago_id):
                return super().delete(request, lago_id)

        return Fixed


class WebhookEndpointRotateSecretSchema(OpenApiViewExtension):
    target_class = "webhooks.api.views.WebhookEndpointRotateSecretView"

    def view_replacement(self):
        if _annotated(self.target_class, "post"):
            return self.target_class

        class Fixed(self.target_class):
            @extend_schema(operation_id="webhook_endpoints_rotate_secret", parameters=[_LAGO_ID], request=None,
                           responses={200: _JSON, 401: _JSON, 404: _JSON},
                           description="Issue a new signing secret (shown once).")
            def post(self, request, lago_id):
                return super().post(request, lago_id)

        return Fixed
