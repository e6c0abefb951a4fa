from __future__ import annotations

from rest_framework.views import APIView

from identity.models import Service


class ServiceAPIView(APIView):
    """Base of every ``/api/v1`` view: authenticated by API key, scoped to ``self.service``.

    Every query a subclass makes must be filtered by ``self.service``.
    """

    @property
    def service(self) -> Service:
        return self.request.user.service
