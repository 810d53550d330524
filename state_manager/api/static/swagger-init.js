// Starts Swagger UI on /docs (state_manager/api/docs.py). Ours, not vendored: the page allows no
// inline script, so the settings come from this script tag's data- attributes.
(function () {
  "use strict";
  var settings = document.currentScript.dataset;
  window.ui = SwaggerUIBundle({
    url: settings.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    displayRequestDuration: true,
    // No badge from validator.swagger.io: the page asks nothing of another host.
    validatorUrl: null,
    oauth2RedirectUrl: window.location.origin + settings.oauth2RedirectUrl,
  });
})();
