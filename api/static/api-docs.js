// Starts Swagger UI on /api/docs with the farm's own OpenAPI document (loaded from a file: the CSP forbids inline script).
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // Swagger UI would otherwise send the document to an outside validator service.
    validatorUrl: null,
  });
});
