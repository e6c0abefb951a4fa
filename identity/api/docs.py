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
