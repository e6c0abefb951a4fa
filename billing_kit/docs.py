"""OpenAPI 3 schema and an offline docs page (no CDN: Swagger UI/Redoc from drf-spectacular-sidecar)."""
import threading
from typing import Any

from django.utils import translation
from drf_spectacular.utils import OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from . import examples, wire


_schemas: dict[tuple, Any] = {}
_schemas_lock = threading.Lock()


@extend_schema(exclude=True)
class SchemaView(SpectacularAPIView):
    """The OpenAPI document, generated once per process and language, then served from memory.

    Generating it walks every view and serializer (hundreds of milliseconds of CPU); it
    only changes with the code, so a public URL must not redo that per request.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def _get_schema_response(self, request):  # noqa: ANN001, ANN202
        version = self.api_version or request.version or self._get_version_parameter(request)
        key = (version, translation.get_language(), self.serve_public)
        with _schemas_lock:
            if key not in _schemas:
                generator = self.generator_class(urlconf=self.urlconf, api_version=version, patterns=self.patterns)
                _schemas[key] = generator.get_schema(request=request, public=self.serve_public)
        return Response(
            data=_schemas[key],
            headers={"Content-Disposition": f'inline; filename="{self._get_filename(request, version)}"'},
        )


class DocsView(SpectacularSwaggerView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    url_name = "api-schema"


class RedocView(SpectacularRedocView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    url_name = "api-schema"


# Shared pieces of every app's operation annotations. Success bodies are each operation's
# own (billing_kit.wire and the apps' api/schemas.py); every other answer is Lago's error body.
LAGO_ERROR = OpenApiResponse(wire.ERROR, description="Lago's error body (`code`, `error_details`: docs/api.md).")
LAGO_OBJECT = LAGO_JSON = LAGO_ERROR
ERRORS = {400: LAGO_ERROR, 401: LAGO_ERROR, 404: LAGO_ERROR, 422: LAGO_ERROR}



_COMMON_ERRORS = {
    # billing_kit.middleware: a NUL byte in any query value, on any operation.
    "422": "Unprocessable Entity: a query parameter is invalid (Lago `validation_errors`).",
    # billing_kit.throttling: the calling key's budget is spent.
    "429": "Too Many Requests (`too_many_requests`): wait `Retry-After` seconds.",
}


def document_common_errors(result: dict, generator, request, public) -> dict:
    """drf-spectacular post-processing hook: the answers every API operation can give,
    whatever its own annotations say (the request guards and the rate limiter run before
    any view)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(wire.components())
    wire.hide_refused_fields(schemas)
    for path, item in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, description in _COMMON_ERRORS.items():
                operation["responses"].setdefault(status, {
                    "content": {"application/json": {"schema": wire.ERROR}},
                    "description": description,
                })
            operation["responses"]["429"].setdefault("headers", {
                "Retry-After": {"schema": {"type": "integer"},
                                "description": "Seconds until the key's budget is renewed."},
            })
    return result


def document_examples(result: dict, generator, request, public) -> dict:
    """drf-spectacular post-processing hook (after ``document_common_errors``): an example of
    every request body and answer (``billing_kit.examples``)."""
    examples.add_examples(result)
    return result
