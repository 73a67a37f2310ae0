from django.urls import path

from demo_site import views

urlpatterns = [
    path("sensitive-data", views.sensitive_data),
    path("items/<int:item_id>", views.Items.as_view()),
    path("report", views.report),
    path("health", views.health),
]
