FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY interop ./interop
COPY adapters ./adapters
COPY mappings ./mappings
COPY fhir_profiles ./fhir_profiles
COPY plo_messages ./plo_messages
RUN pip install --no-cache-dir . && useradd --system --home /app interop
USER interop
EXPOSE 8000
CMD ["interop", "serve", "--host", "0.0.0.0", "--port", "8000"]
