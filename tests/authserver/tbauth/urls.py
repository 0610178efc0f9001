from django.urls import include, path
from oauth2_provider import urls as dot_urls
from oauth2_provider.views import OAuthServerMetadataView

from . import counters

urlpatterns = [
    # token/, revoke_token/, introspect/, .well-known/openid-configuration (OIDC), ...
    path("o/", include(dot_urls, namespace="oauth2_provider")),
    # RFC 8414 metadata for issuer http://host:port/o, path-appended form. DOT's view
    # derives the issuer from the request path (base + "/o").
    path(".well-known/oauth-authorization-server/o", OAuthServerMetadataView.as_view()),
    path("test/counters", counters.counters_view),
    path("test/counters/reset", counters.reset_view),
]
