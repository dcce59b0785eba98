FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY interop ./interop
COPY adapters ./adapters
COPY mappings ./mappings
COPY fhir_profiles ./fhir_profiles
COPY plo_messages ./plo_messages
# file-drop folders (file:///var/lib/dho-interop/messages/…) live in docker-compose's `messages`
# volume; a new named volume takes this folder's owner, so the service user can write there
RUN pip install --no-cache-dir . && useradd --system --home /app interop \
    && mkdir -p /var/lib/dho-interop/messages && chown -R interop /var/lib/dho-interop
USER interop
EXPOSE 8000
CMD ["interop", "serve", "--host", "0.0.0.0", "--port", "8000"]
