using System.Net;

namespace Ftransformers.Server.OpenAI;

/// <summary>A request the server refuses, with what OpenAI's error JSON reports: status, message, type, field and code.</summary>
internal sealed class ApiException(HttpStatusCode status, string message, string? param = null, string? code = null, string type = ApiException.InvalidRequest)
    : Exception(message)
{
    public const string InvalidRequest = "invalid_request_error";
    public const string ServerError = "server_error";

    public HttpStatusCode Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type;

    public static ApiException BadRequest(string message, string? param, string? code = null) => new(HttpStatusCode.BadRequest, message, param, code);
}
