-- Local sample data: applied by `ghl-bridge stack up` (and by `supabase db reset` locally), never by
-- `supabase db push`. The local stack registers the same location and token in its GHL sandbox, so the
-- demo integration works end to end: post the fixtures to ghl-call-webhook, run a sync, pull an import.
INSERT INTO public.ghl_integrations (location_id, api_token, name, integration_type, custom_field_mapping)
VALUES ('loc_Ab12Cd34Ef56', 'local-demo-token', 'Outbound Team A (local demo)', 'internal',
        '{"company_name": "cf_company_name", "contact_title": "cf_contact_title", "linkedin_url": "cf_linkedin_url", "source": "cf_source"}')
ON CONFLICT (location_id) DO NOTHING;

INSERT INTO public.sales_prospects (id, first_name, last_name, company_name, email, phone, contact_title,
                                    linkedin_url, source, tags, campaign, ghl_location_id)
VALUES
  ('00000000-0000-4000-8000-000000000001', 'Dana', 'Whitfield', 'Whitfield Law', 'dana.whitfield@example.com',
   '(555) 010-2233', 'Managing Partner', 'https://www.linkedin.com/in/example-dana', 'Referral',
   '{cold-list,attorneys}', 'Q1 attorneys', 'loc_Ab12Cd34Ef56'),
  ('00000000-0000-4000-8000-000000000002', 'Sam', 'Ortega', 'Ortega Dental', 'SAM@ortega-dental.example',
   '+1 555 987 6543', 'Owner', NULL, 'Website', '{dentists}', 'Q1 dentists', 'loc_Ab12Cd34Ef56')
ON CONFLICT (id) DO NOTHING;
