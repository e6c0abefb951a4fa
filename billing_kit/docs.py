"""OpenAPI 3 schema and an offline docs page (no CDN: Swagger UI/Redoc from drf-spectacular-sidecar)."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
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


# Shared pieces of every app's operation annotations.
LAGO_OBJECT = OpenApiResponse(OpenApiTypes.OBJECT, description="Lago-shaped JSON (see docs/api.md).")
LAGO_JSON = OpenApiResponse(OpenApiTypes.OBJECT, description="Lago-shaped JSON.")
ERRORS = {400: LAGO_OBJECT, 401: LAGO_OBJECT, 404: LAGO_OBJECT, 422: LAGO_OBJECT}

